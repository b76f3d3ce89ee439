"""bench/load.py made small: one real daemon (two workers), 100 runs queued behind runs that
hold both workers, 40 WatchRun streams open on them, a prober calling the daemon meanwhile;
then the workers let go. What must hold under load, no time asserted: every stream ends
after its run's RunFinished with seqs 1..n, every run succeeds, every call of the prober is
answered and every health check says SERVING, and so does the daemon after."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import StartDaemon, start_daemons

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from load import Client, follow, load  # bench/ is not a package: on the path above

RUNS, STREAMS, WORKERS = 100, 40, 2


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def test_a_loaded_daemon_answers_and_every_stream_ends(daemon: StartDaemon) -> None:
    served = daemon("--max-runs", str(WORKERS), "--metrics-listen", "127.0.0.1:0")
    client = Client(served.address)
    try:
        done = load(client, served.address, served.state_dir, runs=RUNS, streams=STREAMS,
                    steps=3, workers=WORKERS, hold_s=0.5, follower=follow)
        assert client.serving()
    finally:
        client.close()
    assert done.queued >= RUNS  # all of them waited behind the holders
    streams = done.streams
    assert (streams.opened, streams.ended_after_finish, streams.gap_free) == (STREAMS,) * 3
    assert streams.errors == {}
    assert done.statuses == {"success": done.submitted + WORKERS}
    for calls in (done.held, done.draining):
        assert calls.errors == {} and calls.not_serving == 0
    assert done.held.check and done.held.getrun
