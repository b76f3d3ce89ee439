"""The store's memory of what remote plugins reported (``interface.RemoteSchemas``), tested
through the Protocol alone for every backend of ``test_store_contract.BACKENDS``, and the
state-dir memory a check uses (``flowhost.store.schemas.StateDirSchemas``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import test_store_contract as contract
from test_store_contract import Open

from flowhost.invokers import RemoteDescriptor
from flowhost.store import Store
from flowhost.store import schemas as remembered
from flowhost.store.schemas import StateDirSchemas

TARGET = "grpc://10.0.0.5:50070"
INPUTS = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
OUTPUTS = {"type": "object", "properties": {"length": {"type": "integer"}}}


backend = contract.backend  # the contract suite's fixtures: every backend
open_store = contract.open_store


def descriptor(name: str = "upper", version: str = "1.0.0",
               outputs: dict[str, object] | None = None) -> RemoteDescriptor:
    return RemoteDescriptor(name, version, "Upper-cases", True, INPUTS, outputs or OUTPUTS)


def test_what_a_server_reported_is_found_again_by_target_and_name(open_store: Open) -> None:
    store = open_store()
    assert store.recorded_schemas(TARGET, "upper") is None
    store.record_schemas(TARGET, [descriptor(), descriptor("lower")])
    found = open_store().recorded_schemas(TARGET, "upper")
    assert found is not None
    assert found.descriptor == descriptor()
    assert found.reported_at > 0
    assert store.recorded_schemas("grpc://10.0.0.6:50070", "upper") is None
    assert store.recorded_schemas(TARGET, "other") is None


def test_a_new_report_replaces_the_old_and_keeps_the_plugins_it_leaves_out(
        open_store: Open) -> None:
    store = open_store()
    store.record_schemas(TARGET, [descriptor(), descriptor("lower")])
    changed = {"type": "object", "properties": {"size": {"type": "integer"}}}
    store.record_schemas(TARGET, [descriptor(version="2.0.0", outputs=changed)])
    upper = store.recorded_schemas(TARGET, "upper")
    assert upper is not None
    assert (upper.descriptor.version, upper.descriptor.output_schema) == ("2.0.0", changed)
    assert store.recorded_schemas(TARGET, "lower") is not None  # served elsewhere for a while


def test_an_unchanged_report_is_not_written_again_within_the_hour(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state") as store:
        store.record_schemas(TARGET, [descriptor()])
        first = store.recorded_schemas(TARGET, "upper")
        store.record_schemas(TARGET, [descriptor()])
        assert store.recorded_schemas(TARGET, "upper") == first
        store.conn.execute("UPDATE remote_schemas SET reported_at = reported_at - ?",
                           (remembered.REFRESH_SECONDS + 1,))
        store.record_schemas(TARGET, [descriptor()])
        again = store.recorded_schemas(TARGET, "upper")
    assert first is not None and again is not None
    assert again.reported_at > first.reported_at - remembered.REFRESH_SECONDS


def test_a_damaged_row_counts_as_nothing_known(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state") as store:
        store.record_schemas(TARGET, [descriptor()])
        store.conn.execute("UPDATE remote_schemas SET output_schema = 'not json'")
        assert store.recorded_schemas(TARGET, "upper") is None
        store.conn.execute("UPDATE remote_schemas SET output_schema = '[1]'")
        assert store.recorded_schemas(TARGET, "upper") is None


def test_the_state_dir_memory_reads_nothing_where_no_store_is(tmp_path: Path) -> None:
    memory = StateDirSchemas(tmp_path / "none", busy_timeout=1)
    assert memory.recorded_schemas(TARGET, "upper") is None
    assert not (tmp_path / "none").exists()  # reading creates no state dir
    memory.record_schemas(TARGET, [descriptor()])
    found = StateDirSchemas(tmp_path / "none", busy_timeout=1).recorded_schemas(TARGET, "upper")
    assert found is not None and found.descriptor == descriptor()


def test_the_state_dir_memory_never_fails_a_check(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    memory = StateDirSchemas(blocked, busy_timeout=1)
    memory.record_schemas(TARGET, [descriptor()])  # no state dir can be made there: ignored
    assert memory.recorded_schemas(TARGET, "upper") is None
    locked = tmp_path / "locked"
    StateDirSchemas(locked, busy_timeout=0).record_schemas(TARGET, [descriptor()])
    holder = sqlite3.connect(locked / "state.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing for longer than we wait
        StateDirSchemas(locked, busy_timeout=0).record_schemas(TARGET, [descriptor("new")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert StateDirSchemas(locked, busy_timeout=0).recorded_schemas(TARGET, "new") is None
