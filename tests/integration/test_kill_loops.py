"""Kill loops: ``flowhost run``/``resume``, and ``flowhost serve`` and its workers, killed with
SIGKILL at random moments, again and again, then resumed or restarted until every run
finishes. Nothing the store had recorded as finished runs again, no accepted run is lost,
the state store opens after every kill, and the result is the one of an uninterrupted run.

Bounded: ``FLOWHOST_KILLS`` kills per loop (default 10); ``FLOWHOST_KILL_SEED`` replays a
loop (the seed is printed, with the counts, in the session's summary).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tallies import (
    SEED,
    Snapshot,
    begun,
    last_value,
    ran_again,
    report,
    snapshot,
    store_opens,
    tally,
    tally_spec,
)
from test_daemon_support import (
    StartDaemon,
    flowhost_command,
    start_daemons,
    stub,
    submit,
    wait_for,
)
from test_resume_kill import comparable, start

from flowhost.store import Store

KILLS = int(os.environ.get("FLOWHOST_KILLS") or 10)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds the daemon's workers in /proc (Linux)")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def reruns(folder: Path) -> int:
    """Executions past the first of each step: at-least-once reruns of steps that were in
    flight at a kill (none of a finished step, which ``ran_again`` checks)."""
    return sum(count - 1 for count in begun(folder).values())


def found_run(output: str, state: Path, folder: Path) -> str | None:
    """The run a killed ``flowhost run`` in ``folder`` made: the id it printed, else the one
    the store has from there (it was killed after recording the run, before printing its
    id), else none yet."""
    first = output.splitlines()[0] if output else ""
    if first.startswith("run_id: "):
        return first.removeprefix("run_id: ")
    if not (state / "state.db").exists():
        return None
    with Store.open(state, create=False) as store:
        runs = [r for r in store.runs() if Path(r.cwd) == folder]
    return runs[0].run_id if runs else None


def test_the_cli_killed_at_random_moments_resumes_until_done(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Runs one after another on one state dir, each killed until it finishes, until
    ``KILLS`` kills were made; each compared with an uninterrupted run of the same spec."""
    rnd = random.Random(SEED)
    spec = tally_spec("cli-chaos", rnd)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "wf.yaml").write_text(spec, encoding="utf-8")
    uninterrupted, _ = start(reference, "run", "wf.yaml")
    try:
        assert uninterrupted.wait(120) == 0
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
    expected = comparable(json.loads((reference / "result.json").read_text(encoding="utf-8")))
    state = tmp_path / "state"
    kills = resumes = runs = rerun = marked = 0
    while kills < KILLS:
        folder = tmp_path / f"run-{runs}"
        folder.mkdir()
        (folder / "wf.yaml").write_text(spec, encoding="utf-8")
        run_id, killed, resumed = kill_until_done(folder, state, rnd, KILLS - kills)
        kills, resumes, runs = kills + killed, resumes + resumed, runs + 1
        done = json.loads(subprocess.run(
            [*flowhost_command(), "runs", "show", run_id, "--json", "--state-dir", str(state)],
            cwd=folder, capture_output=True, text=True, check=True, timeout=60).stdout)
        assert done["status"] == "success", f"seed {SEED}: {run_id}"
        assert comparable(done) == expected, f"seed {SEED}: {run_id}"
        assert done["outputs"]["t1"]["value"] == last_value()
        ended = {label for what, label, _ in tally(folder) if what == "end"}
        assert ended == {step["id"] for step in done["steps"]}
        rerun += reruns(folder)
        marked += sum(bool(s["rerun_after_interruption"]) for s in done["steps"])
    report(request, "kill loop, flowhost run/resume", seed=SEED, kills=kills,
           resumes=resumes, runs=runs, reruns=rerun, marked_rerun=marked)


def kill_until_done(folder: Path, state: Path, rnd: random.Random, kills_left: int
                    ) -> tuple[str, int, int]:
    """``flowhost run``, then ``resume`` after each kill, until the run finished; at most
    ``kills_left`` kills. The run's id, the kills, the resumes."""
    run_id: str | None = None
    shots: list[Snapshot] = []
    kills = resumes = 0
    while True:
        resumes += run_id is not None
        command = ["resume", run_id] if run_id else ["run", "wf.yaml"]
        proc, out = start(folder, *command, "--state-dir", str(state))
        try:
            proc.wait(rnd.uniform(0.05, 1.2) if kills < kills_left else 120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        output = out.read_text("utf-8", "replace")
        if (state / "state.db").exists():
            store_opens(state)
        run_id = run_id or found_run(output, state, folder)
        if run_id is not None:
            shots.append(snapshot(state, run_id, folder))
        if proc.returncode == 0:
            break
        if proc.returncode == 2 and "already finished (success)" in output:
            break  # killed after the run's end was committed, before it exited
        assert proc.returncode == -signal.SIGKILL, f"seed {SEED}: {output}"
    assert run_id is not None
    assert ran_again(shots, folder) == [], f"seed {SEED}: finished steps of {run_id} ran again"
    return run_id, kills, resumes


def workers_of(daemon_pid: int) -> list[int]:
    """The daemon's worker processes now (its children running the worker module)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        if fields[0] != "Z" and int(fields[1]) == daemon_pid \
                and b"flowhost.daemon.worker" in command:
            found.append(int(entry.name))
    return found


def gone(pids: list[int], timeout: float = 30) -> None:
    """Wait until none of ``pids`` is alive (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"process {pid} outlived its kill"
            time.sleep(0.01)


class Submitter:
    """Submits runs from a thread, at random moments, to whichever daemon serves now (also
    while it is being killed): the runs whose ``SubmitRun`` answered are accepted, and each
    must finish; a submit that failed (the daemon was dead or dying) promised nothing."""

    def __init__(self, address: str, seed: int, most: int) -> None:
        self.address = address
        self.accepted: list[str] = []
        self.refused = 0
        self._rnd = random.Random(seed)
        self._most = most
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._submit, daemon=True)
        self._thread.start()

    def runs(self) -> list[str]:
        with self._lock:
            return list(self.accepted)

    def _submit(self) -> None:
        channels: list[grpc.Channel] = []
        try:
            while len(self.accepted) < self._most and not self._stop.wait(
                    self._rnd.uniform(0.1, 1.0)):
                spec = tally_spec("submitted", self._rnd, branches=2, depth=2, tail=1,
                                  seconds=(0.05, 0.2))
                try:
                    run_id = submit(stub(self.address, keep=channels), spec)
                except grpc.RpcError:
                    self.refused += 1
                    continue
                with self._lock:
                    self.accepted.append(run_id)
        finally:
            for channel in channels:
                channel.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


def test_the_daemon_and_its_workers_killed_at_random_moments_finish_every_accepted_run(
        daemon: StartDaemon, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rnd = random.Random(SEED + 1)
    served = daemon("--max-runs", "2")
    state = served.state_dir
    accepted: list[str] = []
    shots: list[Snapshot] = []

    def accept() -> None:
        spec = tally_spec("daemon-chaos", rnd, branches=2, depth=2, tail=1,
                          seconds=(0.05, 0.2))
        accepted.append(submit(served.stub(), spec))

    def shoot() -> None:  # every accepted run, before and after each kill
        shots.extend(snapshot(state, run_id, state / "runs" / run_id)
                     for run_id in accepted + submitter.runs())

    for _ in range(3):
        accept()
    submitter = Submitter(served.address, SEED + 2, most=KILLS // 2)
    daemon_kills = worker_kills = 0
    worker_kills_here = 0  # of this daemon: a run is failed after three worker deaths
    for _ in range(KILLS):
        time.sleep(rnd.uniform(0.0, 1.0))
        workers = workers_of(served.proc.pid)
        shoot()
        if workers and worker_kills_here < 2 and rnd.random() < 0.5:
            victim = rnd.choice(workers)
            os.kill(victim, signal.SIGKILL)
            gone([victim])
            worker_kills += 1
            worker_kills_here += 1
        else:
            served.stop(signal.SIGKILL)
            gone(workers)  # they die with the daemon
            daemon_kills += 1
            store_opens(state)
            shoot()
            served = daemon("--max-runs", "2")
            submitter.address = served.address
            worker_kills_here = 0
        shoot()
    submitter.stop()
    accepted += submitter.accepted
    results = {run_id: wait_for(served.stub(), run_id, timeout=180) for run_id in accepted}
    for run_id, found in results.items():
        folder = state / "runs" / run_id
        assert found["status"] == "success", f"seed {SEED}: {run_id}: {found}"
        assert found["outputs"]["t0"]["value"] == last_value(depth=2, tail=1)
        assert ran_again([s for s in shots if s.run_id == run_id], folder) == [], \
            f"seed {SEED}: finished steps of {run_id} ran again"
    store_opens(state)
    report(request, "kill loop, flowhost serve", seed=SEED + 1, daemon_kills=daemon_kills,
           worker_kills=worker_kills, restarts=daemon_kills, runs=len(accepted),
           submits_refused=submitter.refused,
           reruns=sum(reruns(state / "runs" / run_id) for run_id in accepted))
