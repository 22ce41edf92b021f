"""nanonas.study.liveness: beats and the retry of dead workers' trials, on every storage kind,
Redis and journal files included (Optuna has no heartbeats there)."""

from __future__ import annotations

import time
import uuid

import optuna
import pytest
from conftest import server
from optuna.trial import TrialState

from nanonas import records
from nanonas.storage import Contact, open_storage
from nanonas.study.liveness import Liveness, requeue, retry_of

KINDS = ["journal-file", "redis", "sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def study(request, tmp_path):
    kind = request.param
    if kind == "journal-file":
        url = str(tmp_path / "study.log")
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        url = server(kind)
    storage = open_storage(url)
    contact = Contact(storage, url=url, timeout=30, on_gone=pytest.fail)
    study = optuna.create_study(storage=storage, study_name=f"liveness-{uuid.uuid4().hex}")
    yield study, contact
    contact.close()


def _dead_trial(study: optuna.Study, *, beat_ago: float | None) -> optuna.Trial:
    """A trial whose process sampled it, beat `beat_ago` seconds ago (or never), and died."""
    trial = study.ask()
    trial.suggest_categorical("block_0", ("conv3x3", "skip", "zero"))
    trial.suggest_categorical("block_1", ("conv3x3", "skip", "zero"))
    if beat_ago is not None:
        records.write_alive(trial, time.time() - beat_ago)
    return trial


def _state(study: optuna.Study, number: int) -> TrialState:
    return study.get_trials(deepcopy=False)[number].state


def test_the_running_trial_beats(study):
    study, contact = study
    trial = study.ask()
    liveness = Liveness(study, contact, interval=0.2, current=lambda: trial)
    liveness.start()
    try:
        time.sleep(0.7)
        first = records.alive(study.get_trials(deepcopy=False)[0])
        time.sleep(0.5)
        second = records.alive(study.get_trials(deepcopy=False)[0])
    finally:
        liveness.stop()
    assert first is not None and second > first
    assert abs(second - time.time()) < 1


def test_a_trial_whose_beats_stopped_is_failed_and_retried_with_its_parameters(study):
    study, contact = study
    dead = _dead_trial(study, beat_ago=10)
    alive = _dead_trial(study, beat_ago=0.5)  # beating: left alone
    liveness = Liveness(study, contact, interval=2, current=lambda: None)
    assert liveness.grace == 4
    ((failed, retry),) = liveness.fail_stale()
    assert (failed, retry) == (dead.number, 2)
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[retry].state == TrialState.WAITING and retry_of(trials[retry]) == dead.number
    assert trials[retry].params == trials[dead.number].params
    assert trials[retry].user_attrs == {}  # the dead attempt's curve is not the retry's
    # The next ask, by any worker, runs the retry first.
    assert study.ask().number == retry


def test_optunas_retry_callback_reads_nanonas_retries(study):
    """Pins the system attributes nanonas writes on a retry: Optuna's own helper reads them."""
    study, contact = study
    dead = _dead_trial(study, beat_ago=None)
    first = requeue(study, study.get_trials(deepcopy=False)[dead.number], max_retry=2)
    retried = study.get_trials(deepcopy=False)[first]
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback
    assert callback.retried_trial_number(retried) == dead.number
    assert callback.retry_history(retried) == [dead.number]


def test_a_trial_that_never_beat_is_judged_from_its_start(study):
    study, contact = study
    dead = _dead_trial(study, beat_ago=None)  # asked, then killed before its first beat
    liveness = Liveness(study, contact, interval=0.5, current=lambda: None)
    assert liveness.fail_stale() == []  # just started: not stale yet
    time.sleep(1.5)
    assert [number for number, _ in liveness.fail_stale()] == [dead.number]


def test_beats_keep_their_interval_when_each_beat_takes_time(tmp_path):
    # On a loaded machine a beat's write and the check after it take most of a second; beats
    # spaced by interval + that time looked stale to other workers within two intervals.
    url = str(tmp_path / "study.log")
    storage = open_storage(url)
    contact = Contact(storage, url=url, timeout=30, on_gone=pytest.fail)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    beats: list[float] = []

    def slow_current() -> optuna.Trial:
        beats.append(time.monotonic())
        time.sleep(0.4)  # the beat's own work, as on a loaded machine
        return trial

    liveness = Liveness(study, contact, interval=0.5, current=slow_current)
    liveness.start()
    try:
        time.sleep(2.9)
    finally:
        liveness.stop()
        contact.close()
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(beats) >= 5 and max(gaps) < 0.75, gaps  # not 0.5 + 0.4 apart


def test_nobody_is_judged_while_this_process_itself_just_lost_the_storage(study):
    study, contact = study
    dead = _dead_trial(study, beat_ago=10)
    contact.failed(optuna.exceptions.StorageInternalError("the storage was away"))
    contact.ok()  # back: the owner may not have been able to beat either
    liveness = Liveness(study, contact, interval=0.5, current=lambda: None)
    assert liveness.fail_stale() == []
    time.sleep(1.2)  # calm for longer than the grace period: now it judges
    assert [number for number, _ in liveness.fail_stale()] == [dead.number]


def test_two_checkers_retry_a_dead_trial_once(study):
    study, contact = study
    dead = _dead_trial(study, beat_ago=10)
    one = Liveness(study, contact, interval=1, current=lambda: None)
    other = Liveness(study, contact, interval=1, current=lambda: None)
    assert len(one.fail_stale()) == 1 and other.fail_stale() == []
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert _state(study, dead.number) == TrialState.FAIL


def test_a_chain_is_retried_at_most_max_retry_times(study):
    study, contact = study
    liveness = Liveness(study, contact, interval=0.5, current=lambda: None, max_retry=1)
    dead = _dead_trial(study, beat_ago=10)
    ((_, retry),) = liveness.fail_stale()
    retried = study.ask()  # the retry runs, and dies too
    assert retried.number == retry
    records.write_alive(retried, time.time() - 10)
    assert liveness.fail_stale() == [(retry, None)]
    assert len(study.trials) == 2 and dead.number == 0


def test_the_own_running_trial_is_never_judged(study):
    study, contact = study
    mine = _dead_trial(study, beat_ago=10)  # its beat is late, but it is this process's
    liveness = Liveness(study, contact, interval=0.5, current=lambda: mine)
    assert liveness.fail_stale() == []


def test_an_outage_with_no_trial_running_still_ends_in_gone():
    """The heartbeat thread keeps running through an outage; its checks must not count as the
    storage answering, or the watchdog never ends a wait on a storage gone for good."""
    import threading

    from nanonas.storage.proxy import Proxy

    url = server("postgresql")
    with Proxy.for_url(url) as proxy:
        storage = open_storage(proxy.url(url), reconnect_timeout=2)
        study = optuna.create_study(storage=storage, study_name=f"liveness-{uuid.uuid4().hex}")
        gone = threading.Event()
        contact = Contact(storage, url=url, timeout=2, on_gone=lambda why: gone.set())
        liveness = Liveness(study, contact, interval=0.3, current=lambda: None)
        liveness.start()
        try:
            proxy.refuse()
            waiter = threading.Thread(
                target=lambda: contact.wait(lambda: study.user_attrs), daemon=True
            )
            waiter.start()
            assert gone.wait(6), "the watchdog never gave up"
        finally:
            liveness.stop()
            proxy.resume()
            contact.close()
