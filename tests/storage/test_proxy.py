"""nanonas.storage.proxy: bytes pass through, and drop, freeze, refuse and cut do what they say.

Most tests run against an echo server of their own; one runs against the real PostgreSQL
(skipped without one, failing with CI=true, as the other server tests).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import sqlalchemy
import sqlalchemy.exc
from conftest import server

from nanonas.storage import check_url
from nanonas.storage.proxy import Proxy


class Echo:
    """A TCP server on 127.0.0.1 that echoes back and remembers every byte it received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._echo, args=(sock,), daemon=True).start()
        self.listener.close()

    def _echo(self, sock: socket.socket) -> None:
        sock.settimeout(0.05)
        with sock:
            while not self.stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.received += data
                try:
                    sock.sendall(data)
                except OSError:
                    return

    def got(self, data: bytes, timeout: float = 2) -> bool:
        """Whether `data` reached the server within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if data in self.received:
                    return True
            time.sleep(0.01)
        return False


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.stop.set()


@pytest.fixture
def proxy(echo):
    with Proxy("127.0.0.1", echo.port) as proxy:
        yield proxy


def connect(proxy: Proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.settimeout(2)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def assert_dropped(sock: socket.socket) -> None:
    """The connection is gone: an EOF or a reset, not data and not a timeout."""
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b""


def test_bytes_pass_both_ways(proxy, echo):
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert receive(sock, 5) == b"hello"
        # Larger than any socket buffer: the pumps must keep both directions moving.
        payload = bytes(range(256)) * 8192
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert receive(sock, len(payload)) == payload
        sender.join()
    assert proxy.accepted == 1


def test_drop_resets_open_connections_and_still_accepts(proxy):
    first, second = connect(proxy), connect(proxy)
    for sock in (first, second):
        sock.sendall(b"x")
        assert receive(sock, 1) == b"x"
    assert proxy.drop() == 2
    assert_dropped(first)
    assert_dropped(second)
    assert proxy.drop() == 0
    with connect(proxy) as sock:
        sock.sendall(b"again")
        assert receive(sock, 5) == b"again"
    assert proxy.accepted == 3


def test_freeze_holds_bytes_until_resume(proxy, echo):
    with connect(proxy) as sock:
        sock.sendall(b"warm")
        assert receive(sock, 4) == b"warm"
        proxy.freeze()
        for part in (b"one,", b"two,", b"three"):
            sock.sendall(part)
        late = connect(proxy)  # accepted while frozen, but carries nothing either
        late.sendall(b"late")
        for frozen in (sock, late):
            frozen.settimeout(0.5)
            with pytest.raises(TimeoutError):
                frozen.recv(100)
        assert not echo.got(b"one", timeout=0.2)
        proxy.resume()
        for frozen in (sock, late):
            frozen.settimeout(2)
        assert receive(sock, 13) == b"one,two,three"
        assert receive(late, 4) == b"late"
        late.close()


def test_refuse_then_resume_on_the_same_port(proxy):
    port = proxy.port
    sock = connect(proxy)
    proxy.refuse()
    assert_dropped(sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    proxy.resume()
    assert proxy.port == port
    with connect(proxy) as sock:
        sock.sendall(b"back")
        assert receive(sock, 4) == b"back"


@pytest.mark.parametrize("then", [None, b"COMMIT"])
def test_cut_reply(proxy, echo, then):
    other = connect(proxy)
    other.sendall(b"warm")
    assert receive(other, 4) == b"warm"
    victim = connect(proxy)
    proxy.cut_reply(after=b"INSERT", then=then)
    victim.sendall(b"BEGIN")  # not the request it waits for
    assert receive(victim, 5) == b"BEGIN"
    victim.sendall(b"INSERT")
    if then is not None:
        assert receive(victim, 6) == b"INSERT"  # primed, not cut yet
        other.sendall(b"COMMIT")  # the same bytes from another connection do not trip it
        assert receive(other, 6) == b"COMMIT"
        victim.sendall(b"COMMIT")
    assert echo.got(then or b"INSERT")  # the server processed it...
    assert_dropped(victim)  # ...the client never sees the answer
    victim.close()
    other.sendall(b"INSERT")  # disarmed, and the other connection is untouched
    assert receive(other, 6) == b"INSERT"
    other.close()


def test_url_rewrites_only_host_and_port(proxy):
    port = proxy.port
    assert proxy.url("postgresql://u:p@10.0.0.1:5432/db?x=1") == (
        f"postgresql://u:p@127.0.0.1:{port}/db?x=1"
    )
    assert proxy.url("redis://127.0.0.1:6379/0") == f"redis://127.0.0.1:{port}/0"
    assert (
        proxy.url("mysql+pymysql://root@db/test") == f"mysql+pymysql://root@127.0.0.1:{port}/test"
    )


def test_for_url(echo):
    with Proxy.for_url(f"redis://127.0.0.1:{echo.port}/0") as proxy:
        assert proxy.target == ("127.0.0.1", echo.port)
    with pytest.raises(ValueError, match="postgresql://u:\\*\\*\\*@db-host/db"):
        Proxy.for_url("postgresql://u:secret@db-host/db")


def test_unreachable_upstream_closes_the_client():
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with Proxy("127.0.0.1", port) as proxy, connect(proxy) as sock:
        assert_dropped(sock)


def test_close_ends_every_thread(echo):
    def proxy_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "nanonas-proxy"]

    before = proxy_threads()
    proxy = Proxy("127.0.0.1", echo.port)
    busy, frozen = connect(proxy), connect(proxy)
    busy.sendall(b"x")
    assert receive(busy, 1) == b"x"
    proxy.freeze()
    frozen.sendall(b"y")
    assert len(proxy_threads()) > len(before)
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 2.5
    assert [t for t in proxy_threads() if t not in before] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    busy.close()
    frozen.close()


def test_postgresql_through_the_proxy():
    url = server("postgresql")
    with Proxy.for_url(url) as proxy:
        # check_url names the driver nanonas uses (psycopg2; SQLAlchemy 2.1 would pick psycopg).
        engine = sqlalchemy.create_engine(
            check_url(proxy.url(url)), poolclass=sqlalchemy.pool.NullPool
        )
        try:
            with engine.connect() as connection:
                assert connection.exec_driver_sql("SELECT 1").scalar() == 1
                assert proxy.drop() == 1
                with pytest.raises(sqlalchemy.exc.OperationalError):
                    connection.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()
