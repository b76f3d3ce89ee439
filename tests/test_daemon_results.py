"""The daemon keeps the results of finished runs it was asked for (``FinishedResults``):
only those, within a budget of bytes, the least recently asked for going first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flowhost import events as ev
from flowhost.daemon.journal import Journal
from flowhost.daemon.results import FinishedResults
from flowhost.store import Store


def test_the_least_recently_asked_for_go_first_past_the_budget() -> None:
    kept = FinishedResults(budget=800)
    for name in "abcd":
        kept.keep(name, b"x" * 190)
    assert kept.get("a") is not None  # 760 bytes: all kept; a asked for again
    kept.keep("e", b"y" * 190)  # past the budget: b, the least recently asked for, goes
    assert kept.get("b") is None and kept.get("a") and kept.get("c") and kept.get("e")
    kept.keep("huge", b"z" * 201)  # more than a quarter of the budget: not kept
    assert kept.get("huge") is None and kept.get("a") is not None


def test_only_finished_runs_are_kept_and_read_the_same(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        for run_id in ("done", "going"):
            record = store.create_run(run_id=run_id, workflow_id="w", spec_text="t",
                                      spec_path="/w.yaml", spec_redacted=False,
                                      overrides=[], cwd="/", total_steps=1)
            lease = store.acquire(record, "test")  # (running, not interrupted)
            begun = ev.RunStarted(run_id, workflow_id="w", description="", total_steps=1,
                                  steps=(("a", "noop", ""),))
            store.append(record, [begun, ev.StepFinished(run_id, "a", "noop", "noop",
                                                         "success", 1, 0.1, {"value": 1})])
            if run_id == "done":
                store.append(record, [ev.RunFinished(run_id, status="success", duration_s=0.2)])
                assert lease is not None
                store.release(lease)

        async def main() -> None:
            journal = Journal(tmp_path)
            await journal.open()
            try:
                first = await journal.result_json("done")
                assert journal.finished.get("done") == first
                assert await journal.result_json("done") == first
                await journal.result_json("going")
                assert journal.finished.get("going") is None  # it may change yet
            finally:
                await journal.close()
        asyncio.run(main())
