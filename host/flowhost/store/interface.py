"""What the rest of flowhost needs from a state store, as Protocols: runs, their journal of
events, the step cache and plugin durations, the open questions, run ownership, and what
remote plugins reported of themselves.

``flowhost.store.db.Store`` (SQLite) is the embedded backend; another backend (PostgreSQL,
for several machines) implements the same Protocols and passes the same contract suite
(``tests/test_store_contract.py``). No SQL, and no ``sqlite3``, outside a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from flowhost.events import Event, InterventionRequested, InterventionResolved

if TYPE_CHECKING:
    from flowhost.engine import StepCache
    from flowhost.invokers import RecordedSchemas, RemoteDescriptor
    from flowhost.store.rows import RunRecord


@dataclass(frozen=True, slots=True)
class Lease:
    """Ownership of one run: who executes it, and the how-manieth owner that is (``epoch``
    grows by one with every new owner, so a write can be fenced by it). ``expires_at`` (unix
    time) is when others may take the run over if the owner stops renewing; None where
    the backend knows an owner's death at once (SQLite: the process's lock)."""

    run_id: str
    owner: str
    epoch: int
    expires_at: float | None = None


class JournalWriter(Protocol):
    """Appends one run's events as they happen; a step's ``StepFinished`` is committed before
    the call returns. Once a write fails, ``failure`` says why, ``on_failure`` is told, and
    nothing more is written."""

    failure: str | None
    on_failure: Callable[[str], None] | None

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


class RunStore(Protocol):
    def create_run(self, *, run_id: str, workflow_id: str, spec_text: str, spec_path: str,
                   spec_redacted: bool, overrides: list[str], cwd: str, total_steps: int,
                   status: str = "running") -> RunRecord: ...

    def submit_run(self, *, request_id: str, run_id: str, workflow_id: str, spec_text: str,
                   spec_path: str, spec_redacted: bool, overrides: list[str], cwd: str,
                   total_steps: int) -> tuple[RunRecord, bool]: ...

    def submission(self, request_id: str) -> RunRecord | None: ...

    def runs_page(self, *, before: int | None = None, limit: int = 100,
                  status: str | None = None,
                  workflow_id: str | None = None) -> list[RunRecord]: ...

    def run(self, run_id: str) -> RunRecord: ...

    def runs(self, *, limit: int | None = None,
             statuses: Iterable[str] | None = None) -> list[RunRecord]: ...

    def run_ids(self, statuses: Iterable[str]) -> list[tuple[int, str]]:
        """(run_no, run_id) of the runs with one of ``statuses``, newest first: what
        ``runs`` finds without reading each run's spec."""
        ...

    def latest_resumable(self) -> RunRecord | None: ...

    def live_status(self, record: RunRecord) -> str: ...

    def steps_succeeded(self, record: RunRecord) -> int: ...

    def replace_spec(self, record: RunRecord, *, spec_text: str, spec_redacted: bool,
                     total_steps: int) -> RunRecord:
        """The run goes on with an edited spec (``resume --reload-spec``)."""
        ...


class Journal(Protocol):
    def events(self, record: RunRecord, after_seq: int = 0) -> list[Event]: ...

    def append(self, record: RunRecord, events: Iterable[Event]) -> None: ...

    def append_decision(self, record: RunRecord, event: InterventionResolved, *,
                        request_seq: int, log: bool = True
                        ) -> tuple[InterventionResolved, bool]:
        """Record an answer atomically, only if the question (``request_seq``) has none:
        (the answer that counts, whether it is ``event``); ``log``: append it to the log
        in the same transaction (the caller owns the run)."""
        ...

    def comments(self, record: RunRecord) -> dict[int, str]: ...

    def writer(self, record: RunRecord, *, cache: StepCache | None = None,
               secrets: Iterable[str] = (),
               inputs_key: Callable[[str], str | None] | None = None) -> JournalWriter: ...


class CacheStore(Protocol):
    def step_cache(self, secrets: Iterable[str] = ()) -> StepCache: ...

    def clear_cache(self, plugin: str | None = None) -> int: ...

    def durations(self, plugins: Iterable[str],
                  per_plugin: int = 20) -> dict[str, list[float]]: ...

    def similar_durations(self, wanted: Iterable[tuple[str, str]],
                          per_key: int = 20) -> dict[tuple[str, str], list[float]]:
        """The latest durations of each plugin with each inputs key."""
        ...


class Questions(Protocol):
    def open_questions(self, record: RunRecord) -> dict[str, InterventionRequested]: ...

    def answers(self, record: RunRecord) -> dict[int, InterventionResolved]:
        """The answers recorded for the run's questions, by the seq of each question (also
        those its owner has not logged yet)."""
        ...


class Ownership(Protocol):
    def acquire(self, record: RunRecord, owner: str) -> Lease | None:
        """Own the run, or None while someone else does (also this process, through another
        lease: ownership is not re-entrant)."""
        ...

    def release(self, lease: Lease) -> None: ...

    def owned(self, record: RunRecord) -> bool:
        """Whether anyone (another process, or this one) owns the run now."""
        ...

    def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        """Whether ``owner`` holds ``role`` for the next ``seconds``: a job one process
        among those sharing the store does (one daemon reports the runs that wait). Taken
        when nobody holds it or its holder's time ran out, renewed when it is ``owner``'s;
        a holder keeps it by asking again within ``seconds``."""
        ...

    def let_go_of_role(self, role: str, owner: str) -> None:
        """Give ``role`` back, if ``owner`` holds it: the next to ask takes it at once."""
        ...


class RemoteSchemas(Protocol):
    """The descriptors remote plugins last reported (``flowhost.invokers.SchemaMemory``):
    what a workflow is checked against while a plugin's server cannot be reached."""

    def recorded_schemas(self, target: str, plugin: str) -> RecordedSchemas | None: ...

    def record_schemas(self, target: str, plugins: Iterable[RemoteDescriptor]) -> None:
        """Keep what server ``target`` (``grpc://HOST:PORT``) reports of ``plugins``; the
        other plugins recorded for it stay (a server may serve fewer for a while)."""
        ...


class StateStore(RunStore, Journal, CacheStore, Questions, Ownership, RemoteSchemas,
                 Protocol):
    """Everything a run, the CLI and the daemon need; a backend implements all of it."""

    path: Path

    def close(self) -> None: ...
