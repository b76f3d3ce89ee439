"""The step cache on the state store: keys, secrets, TTL, re-validation, what is not cached."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import EventBus
from flowhost.problems import SpecError
from flowhost.result import RunResult, fold
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost.store import Store, StoreCache, StoreListener

SECRET = "s3cr3t-VALUE-do-not-store"


async def run(store: Store, text: str, env: dict[str, str] | None = None, *,
              use_cache: bool = True) -> RunResult:
    env = env or {}
    plan = check(parse_spec(text), Catalog(), env)
    record = store.create_run(run_id=f"run-{len(store.runs())}", workflow_id="w",
                              spec_text=text, spec_path="wf.yaml", spec_redacted=False,
                              overrides=[], cwd=".", total_steps=len(plan.steps))
    secrets = [env[name] for name in plan.secret_names if name in env]
    cache = StoreCache(store, secrets) if use_cache else None
    listener = StoreListener(store, record, cache=cache)
    bus = EventBus()
    bus.subscribe(listener)
    await Engine(plan, bus, run_id=record.run_id, env=env, cache=cache).run()
    listener.close()
    assert bus.history is not None and listener.failure is None
    return fold(bus.history)


def calls(path: Path) -> int:
    """Calls of ``counter`` (a line each), or completed calls of ``journal``."""
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(1 for line in lines if not line.startswith("begin "))


def step(result: RunResult, step_id: str) -> Any:
    return next(s for s in result.steps if s.id == step_id)


def counter_spec(tmp_path: Path, extra: str = "", inputs: str = "") -> str:
    return (f"workflow_id: w\nsteps:\n  - id: c\n    plugin: counter\n"
            f"    inputs: {{calls: {tmp_path / 'calls.txt'}, text: hello{inputs}}}\n{extra}")


async def test_an_idempotent_step_is_cached_across_runs(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path)
    first = await run(store, spec)
    second = await run(store, spec)
    assert calls(tmp_path / "calls.txt") == 1
    assert not step(first, "c").cached and step(second, "c").cached
    assert second.outputs == first.outputs and second.status == "success"
    other = await run(store, counter_spec(tmp_path).replace("hello", "other"))
    assert not step(other, "c").cached and calls(tmp_path / "calls.txt") == 2


async def test_no_cache_neither_reads_nor_writes(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path)
    await run(store, spec, use_cache=False)
    await run(store, spec)
    assert calls(tmp_path / "calls.txt") == 2
    assert not step(await run(store, spec, use_cache=False), "c").cached


async def test_cache_false_and_non_idempotent_plugins_are_not_cached(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path, "    cache: false\n")
    await run(store, spec)
    await run(store, spec)
    assert calls(tmp_path / "calls.txt") == 2
    journal = tmp_path / "journal.txt"
    spec = f"workflow_id: w\nsteps:\n  - {{plugin: journal, inputs: {{journal: {journal}, " \
           "label: x}}\n"
    await run(store, spec)
    await run(store, spec)
    assert calls(journal) == 2


async def test_secrets_are_hashed_into_the_key_and_never_stored(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path, inputs=", token: '${secret.TOKEN}'")
    await run(store, spec, {"TOKEN": SECRET})
    second = await run(store, spec, {"TOKEN": SECRET})
    assert step(second, "c").cached and calls(tmp_path / "calls.txt") == 1
    changed = await run(store, spec, {"TOKEN": SECRET + "-rotated"})
    assert not step(changed, "c").cached and calls(tmp_path / "calls.txt") == 2
    store.close()
    for path in (tmp_path / "state").rglob("*"):  # the database, the step logs...
        assert path.is_dir() or SECRET.encode() not in path.read_bytes(), path


async def test_outputs_holding_a_secret_are_not_cached(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path).replace("text: hello", "text: 'x ${secret.TOKEN}'")
    first = await run(store, spec, {"TOKEN": SECRET})
    await run(store, spec, {"TOKEN": SECRET})
    assert calls(tmp_path / "calls.txt") == 2
    assert first.outputs["c"]["text"] == "x ***"
    assert store.conn.execute("SELECT count(*) FROM cache").fetchone()[0] == 0


async def test_a_cached_result_whose_checks_fail_now_is_a_miss(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    project = tmp_path / "project"
    spec = counter_spec(tmp_path, "    validation:\n      - files_exist: ['${c.directory}']\n",
                        inputs=f", directory: {project}")
    await run(store, spec)
    assert step(await run(store, spec), "c").cached
    shutil.rmtree(project)
    third = await run(store, spec)
    assert not step(third, "c").cached and third.status == "success"
    assert project.is_dir() and calls(tmp_path / "calls.txt") == 2


async def test_a_ttl_expires_cached_results(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path, "    cache: {ttl: 3600}\n")
    await run(store, spec)
    assert step(await run(store, spec), "c").cached
    store.conn.execute("UPDATE cache SET created_at = created_at - 7200")
    assert not step(await run(store, spec), "c").cached
    assert calls(tmp_path / "calls.txt") == 2


async def test_outputs_of_a_fallback_are_not_cached_for_the_primary(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    cache: true
    inputs: {{counter_file: {tmp_path / 'n'}, fail_times: 1, kind: permanent}}
    fallback: [{{plugin: alternative}}]
"""
    first = await run(store, spec)
    assert step(first, "f").used_plugin == "alternative"
    second = await run(store, spec)  # the primary runs (and succeeds) this time
    assert not step(second, "f").cached and step(second, "f").used_plugin == "flaky"
    third = await run(store, spec)
    assert step(third, "f").cached and third.outputs["f"]["calls"] == 2


async def test_cache_clear(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    spec = counter_spec(tmp_path)
    await run(store, spec)
    assert store.clear_cache("other-plugin") == 0
    assert store.clear_cache() == 1
    assert not step(await run(store, spec), "c").cached


def test_cache_ttl_spellings() -> None:
    base = "workflow_id: w\nsteps:\n  - plugin: noop\n"
    step_ = parse_spec(base + "    cache: {ttl: 60}\n").workflow.steps[0]
    assert step_.cache is True and step_.cache_ttl == 60
    step_ = parse_spec(base + "    cache_ttl: 30\n").workflow.steps[0]
    assert step_.cache is None and step_.cache_ttl == 30
    assert parse_spec(base + "    cache: false\n").workflow.steps[0].cache is False
    with pytest.raises(SpecError, match="unknown field 'tll'"):
        parse_spec(base + "    cache: {tll: 60}\n")
    with pytest.raises(SpecError, match=r"field 'cache\.ttl'"):
        parse_spec(base + "    cache: {ttl: -1}\n")
    with pytest.raises(SpecError, match="field 'cache_ttl'"):
        parse_spec(base + "    cache_ttl: -1\n")
