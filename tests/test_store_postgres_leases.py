"""Leases on the PostgreSQL store (``flowhost.store.postgres.lease``): a lease is renewed
while its owner lives, taken over once it expired (an owner frozen with SIGSTOP past its
lease), and every write of an owner that lost its lease is refused by the epoch fence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_store_contract import finished, new_run, started

from flowhost.problems import StorageError
from flowhost.store.postgres import PostgresStore

# A child that owns run r1 with a one-second lease and is writing its journal, says so,
# and on "write" from stdin writes a step's end and prints how its writer fared.
_OWNER = """
import sys
from flowhost.store.postgres import PostgresStore
from flowhost import events as ev
store = PostgresStore.open(sys.argv[1], lease_seconds=1.0)
lease = store.acquire(store.run("r1"), "frozen")
writer = store.writer(store.run("r1"))
print("held", lease.epoch, flush=True)
sys.stdin.readline()
writer(ev.StepFinished("r1", "late", "noop", "noop", "success", 1, 0.1, {"value": 1}))
print("failure:", writer.failure, flush=True)
"""


def _wait(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


def test_a_live_owner_keeps_its_lease_past_the_lease_time(postgres_url: str) -> None:
    with PostgresStore.open(postgres_url, lease_seconds=0.6) as owner, \
            PostgresStore.open(postgres_url) as other:
        record = new_run(owner)
        lease = owner.acquire(record, "owner")
        assert lease is not None and lease.expires_at is not None
        renewed = lambda: other.one(  # noqa: E731 - a probe
            "SELECT expires_at FROM leases WHERE run_no = %s", (record.run_no,))[0]
        first = renewed()
        _wait("a renewal", lambda: renewed() > first)  # renewed, by its own thread
        assert other.owned(record) and other.acquire(record, "thief") is None
        owner.release(lease)
        assert not other.owned(record)  # given back: free at once
        again = other.acquire(record, "next")
        assert again is not None and again.epoch == 2
        other.release(again)


def test_an_owner_frozen_past_its_lease_is_taken_over_and_then_writes_nothing(
        postgres_url: str) -> None:
    with PostgresStore.open(postgres_url) as store:
        record = new_run(store)
        child = subprocess.Popen([sys.executable, "-c", _OWNER, postgres_url],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ))
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().split() == ["held", "1"]
            os.kill(child.pid, signal.SIGSTOP)  # frozen: it renews nothing more
            assert store.acquire(record, "me") is None or pytest.fail("taken while live")
            _wait("the frozen owner's lease to expire", lambda: not store.owned(record))
            lease = store.acquire(record, "me")  # ends the frozen owner's session
            assert lease is not None and lease.epoch == 2
            writer = store.writer(record)
            writer(started("r1", "a"))
            writer(finished("r1", "a"))
            os.kill(child.pid, signal.SIGCONT)
            child.stdin.write("write\n")
            child.stdin.flush()
            said = child.stdout.readline()
            # (stopped by its own clock, its lease ran out unrenewed, or by the fence)
            assert said.startswith("failure:") and "writes nothing more" in said, said
            writer.close()
            assert [e.step_id for e in store.events(record)] == ["a", "a"]  # type: ignore[attr-defined]
            store.release(lease)
        finally:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.communicate()


def test_the_epoch_fences_every_write_of_an_owner_that_lost_its_lease(
        postgres_url: str) -> None:
    with PostgresStore.open(postgres_url) as owner, PostgresStore.open(postgres_url) as db:
        record = new_run(owner)
        lease = owner.acquire(record, "owner")
        assert lease is not None
        # Another owner took the run over by the lease alone (its session lock went with a
        # pooler, say): the epoch moved on, and the old owner's session still lives.
        db.change("UPDATE leases SET epoch = epoch + 1 WHERE run_no = %s", (record.run_no,))
        failures: list[str] = []
        writer = owner.writer(record)
        writer.on_failure = failures.append
        writer(finished("r1", "a"))
        assert writer.failure is not None and "lost its lease" in writer.failure
        assert failures == [writer.failure]
        with pytest.raises(StorageError, match="lost its lease"):
            owner.append(record, [started("r1", "b")])
        assert db.events(record) == []
        owner.release(lease)


def test_an_owner_that_cannot_renew_its_lease_stops_writing_when_it_runs_out(
        postgres_url: str) -> None:
    """Its renewals blocked (here by a lock on ``leases``, as a store it cannot reach would
    fail them): once its lease ran out, nobody having taken the run over yet, the owner
    writes nothing more, since another may take the run at any moment."""
    import psycopg

    with PostgresStore.open(postgres_url, lease_seconds=1.0, busy_timeout=0.2) as owner:
        record = new_run(owner)
        lease = owner.acquire(record, "owner")
        assert lease is not None
        writer = owner.writer(record)
        writer(started("r1", "a"))  # written while the lease holds
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE")  # renewals wait
            time.sleep(1.5)
            writer(finished("r1", "a"))
            holder.rollback()
        assert writer.failure is not None and "could not renew its lease" in writer.failure
        assert [type(e).__name__ for e in owner.events(record)] == ["StepStarted"]
        owner.release(lease)


def test_a_submission_wakes_the_daemons_listening(postgres_url: str) -> None:
    import threading

    from flowhost.store.postgres.claim import Wakeups

    woken = threading.Event()
    wakeups = Wakeups(postgres_url, woken.set)
    with PostgresStore.open(postgres_url) as store:
        wakeups.start()
        try:
            deadline = time.monotonic() + 60
            number = 0
            while not woken.is_set():  # (until its LISTEN is in place, a NOTIFY is missed)
                number += 1
                store.submit_run(request_id=f"q{number}", run_id=f"r{number}",
                                 workflow_id="w", spec_text="t", spec_path="s.yaml",
                                 spec_redacted=False, overrides=[], cwd="/", total_steps=1)
                assert time.monotonic() < deadline, "no wake-up"
                woken.wait(0.2)
            claimed = store.claim("me", 100)
            assert [r.run_id for r in claimed] == [f"r{i}" for i in range(1, number + 1)]
            assert store.claim("someone else", 100) == []  # reserved for "me" meanwhile
        finally:
            wakeups.stop()


def test_the_claims_of_a_daemon_that_died_are_free_at_once(postgres_url: str) -> None:
    with PostgresStore.open(postgres_url) as store:
        store.submit_run(request_id="q", run_id="r1", workflow_id="w", spec_text="t",
                         spec_path="s.yaml", spec_redacted=False, overrides=[], cwd="/",
                         total_steps=1)
        dying = PostgresStore.open(postgres_url)
        assert [r.run_id for r in dying.claim("dying", 5)] == ["r1"]
        assert store.claim("other", 5) == []  # claimed, and its claimer lives
        dying.close()  # its session ends (as when its process is killed)
        deadline = time.monotonic() + 30  # (the server notices moments later)
        while not (claimed := store.claim("other", 5)):
            assert time.monotonic() < deadline, "the dead daemon's claim was never free"
            time.sleep(0.02)
        assert [r.run_id for r in claimed] == ["r1"]
