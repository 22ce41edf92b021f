"""nanonas.storage.contact: retries of safe calls, outage lines, and the watchdog that ends a
wait on a storage that never answers again, frozen or refused (through nanonas's TCP proxy)."""

from __future__ import annotations

import re
import threading
import time
import uuid

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc
from conftest import server

from nanonas.storage import ConnectionLost, Contact, fault, open_storage
from nanonas.storage import contact as contact_module
from nanonas.storage.proxy import Proxy

TIMEOUT = 2.0  # the contact's timeout in these tests: seconds of silence before "gone"


class Gone:
    """An on_gone that records each call and when it came."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.event = threading.Event()

    def __call__(self, why: str) -> None:
        self.calls.append((time.monotonic(), why))
        self.event.set()


@pytest.fixture
def sqlite_contact(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    gone = Gone()
    contact = Contact(open_storage(url), url=url, timeout=TIMEOUT, on_gone=gone)
    yield contact, gone
    contact.close()


def test_retry_repeats_faults_and_passes_other_errors_at_once(sqlite_contact):
    contact, gone = sqlite_contact
    tries = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise optuna.exceptions.StorageInternalError("commit failed") from _dropped()
        return "done"

    def wrong() -> None:
        tries.append(1)
        raise ValueError("bad value")

    assert contact.retry(flaky) == "done" and len(tries) == 3
    assert "answered again after" in contact.outage()
    with pytest.raises(ValueError):
        contact.retry(wrong)
    assert len(tries) == 4  # once: a ValueError is not a fault
    assert contact.outage() is None and gone.calls == []


def test_outage_lines_and_calm(sqlite_contact):
    contact, gone = sqlite_contact
    assert contact.outage() is None and contact.calm_for() == float("inf")
    contact.failed(_dropped())
    assert contact.calm_for() == 0.0
    time.sleep(0.2)
    contact.ok()
    line = contact.outage()
    assert line.startswith("storage sqlite:///") and "server closed the connection" in line
    assert "answered again after 0.2 s" in line
    assert contact.outage() is None  # said once
    assert 0 <= contact.calm_for() < 1
    assert gone.calls == []


def test_a_short_fault_soon_after_an_outage_is_its_tail_with_no_line(sqlite_contact):
    contact, gone = sqlite_contact
    contact.failed(_dropped())
    time.sleep(0.1)
    contact.ok()
    assert "answered again after" in contact.outage()
    contact.failed(_dropped())  # a connection the outage broke, used only now
    contact.ok()
    assert contact.outage() is None
    assert contact.calm_for() < 1


def test_a_short_fault_long_after_an_outage_has_its_line(sqlite_contact, monkeypatch):
    contact, _ = sqlite_contact
    monkeypatch.setattr(contact_module, "_AFTERMATH", 0.2)
    contact.failed(_dropped())
    contact.ok()
    assert contact.outage() is not None
    time.sleep(0.3)
    contact.failed(_dropped())
    contact.ok()
    assert "answered again after 0.0 s" in contact.outage()
    monkeypatch.setattr(contact_module, "_BLIP", 0.05)  # a long fault, however soon, has one
    contact.failed(_dropped())
    time.sleep(0.1)
    contact.ok()
    assert "answered again after 0.1 s" in contact.outage()


def test_gone_is_called_once_after_timeout_of_failing(sqlite_contact):
    contact, gone = sqlite_contact
    start = time.monotonic()
    contact.failed(_dropped())
    assert gone.event.wait(TIMEOUT + 2)
    ((when, why),) = gone.calls
    assert TIMEOUT <= when - start <= TIMEOUT + 1
    # The line names the silence it measured: the timeout, or a second more when the watchdog
    # thread woke late on a loaded machine (CI once printed "no answer for 3 s" here).
    silent = re.search(r"no answer for (\d+) s", why)
    assert "server closed the connection" in why and silent, why
    assert round(TIMEOUT) <= int(silent[1]) <= round(when - start) + 1
    time.sleep(1)
    assert len(gone.calls) == 1


def _dropped() -> Exception:
    return sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection unexpectedly")
    )


# --- real servers, through the proxy ------------------------------------------------------------


@pytest.fixture(params=["postgresql", "mysql", "redis"])
def proxied(request):
    """(url through the proxy, proxy, storage, study) on a real server."""
    url = server(request.param)
    with Proxy.for_url(url) as proxy:
        storage = open_storage(proxy.url(url), reconnect_timeout=TIMEOUT)
        study = optuna.create_study(storage=storage, study_name=f"contact-{uuid.uuid4().hex}")
        study.enqueue_trial({})  # something to read
        yield proxy.url(url), proxy, storage, study


def _in_thread(call):
    """Run `call` in a daemon thread; returns a dict that gets 'result' or 'error'."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as e:
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    out["thread"] = thread
    return out


def test_a_frozen_storage_is_declared_gone_after_the_timeout(proxied):
    url, proxy, storage, study = proxied
    gone = Gone()
    contact = Contact(storage, url=url, timeout=TIMEOUT, on_gone=gone)

    def read() -> int:
        with contact.attempt():
            return len(study.get_trials())

    try:
        proxy.freeze()
        start = time.monotonic()
        call = _in_thread(read)
        assert gone.event.wait(TIMEOUT + 3), "the watchdog never gave up"
        assert TIMEOUT <= gone.calls[0][0] - start <= TIMEOUT + 1.5
        assert "no answer for" in gone.calls[0][1]
        if not url.startswith("postgresql"):
            # PyMySQL's and redis-py's read timeouts end the call too. (libpq has none; its
            # statements are cut by the watchdog, tested below; the runner exits on gone.)
            call["thread"].join(TIMEOUT + 5)
            assert fault(call["error"]) is not None
    finally:
        proxy.resume()
        contact.close()


def test_a_postgresql_statement_on_a_frozen_link_is_cut():
    url = server("postgresql")
    with Proxy.for_url(url) as proxy:
        storage = open_storage(proxy.url(url), reconnect_timeout=TIMEOUT)
        study = optuna.create_study(storage=storage, study_name=f"contact-{uuid.uuid4().hex}")
        contact = Contact(storage, url=url, timeout=TIMEOUT, on_gone=Gone())
        # Freeze once the statement is on its way, past the pool's ping (which nothing cuts).
        freeze = lambda *args: proxy.freeze()  # noqa: E731
        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", freeze)
        try:
            start = time.monotonic()
            with pytest.raises(Exception) as error:
                study.get_trials()
            assert TIMEOUT <= time.monotonic() - start <= TIMEOUT + 1.5
            assert isinstance(fault(error.value), ConnectionLost)
        finally:
            sqlalchemy.event.remove(storage.engine, "before_cursor_execute", freeze)
            proxy.resume()
            contact.close()
        assert study.get_trials() == []  # a new connection replaces the cut one


def test_a_refused_storage_is_waited_for_and_the_wait_ends_when_it_is_back(proxied):
    url, proxy, storage, study = proxied
    gone = Gone()
    contact = Contact(storage, url=url, timeout=30, on_gone=gone)
    try:
        proxy.refuse()
        call = _in_thread(lambda: contact.retry(lambda: len(study.get_trials())))
        time.sleep(1.5)
        assert "result" not in call
        proxy.resume()
        call["thread"].join(10)
        assert call.get("result") == 1
        assert "answered again after" in contact.outage()
        assert gone.calls == []
    finally:
        proxy.resume()
        contact.close()


def test_ctrl_c_under_a_statement_stays_ctrl_c(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage)
    contact = Contact(storage, url=url, timeout=TIMEOUT, on_gone=Gone())

    def interrupt(*args) -> None:
        raise KeyboardInterrupt

    sqlalchemy.event.listen(storage.engine, "do_execute", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):  # not ConnectionLost, which would be retried
            study.get_trials()
        assert contact.calm_for() == float("inf")  # and not counted as an outage
    finally:
        sqlalchemy.event.remove(storage.engine, "do_execute", interrupt)
        contact.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_idle_connections_the_server_closed_are_replaced_with_no_outage(kind):
    # Several pooled connections, all closed while idle (a server restart, an idle timeout):
    # the pool's pre-ping finds each dead and replaces it. That is no outage: before, each one
    # opened an outage of 0 s with a warning line of its own.
    url = server(kind)
    with Proxy.for_url(url) as proxy:
        storage = open_storage(proxy.url(url), reconnect_timeout=TIMEOUT)
        study = optuna.create_study(storage=storage, study_name=f"contact-{uuid.uuid4().hex}")
        contact = Contact(storage, url=url, timeout=TIMEOUT, on_gone=Gone())
        try:
            held = [storage.engine.connect() for _ in range(3)]  # three in the pool
            for c in held:
                c.close()
            assert proxy.drop() >= 3
            for _ in range(4):
                with contact.attempt():
                    study.get_trials()
            assert contact.outage() is None
            assert contact.calm_for() == float("inf")
        finally:
            contact.close()
