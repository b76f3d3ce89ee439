"""flowhost_sdk.testing: the conformance kit passes good plugins and names what is wrong with
bad ones."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from flowhost_test_plugins.basic import Echo, Noop, SyncEcho
from flowhost_test_plugins.failing import Crash, Fail
from pydantic import BaseModel

from flowhost_sdk import InvocationContext, PermanentError, Plugin, TransientError
from flowhost_sdk.testing import ConformanceError, ErrorCase, assert_conforms, check_conformance


def test_good_plugins_conform() -> None:
    report = assert_conforms(Echo, [{"text": "a"}, {"text": "b", "tags": ["x"]}])
    assert report.plugin == "echo"
    assert report.local_outputs == report.remote_outputs
    assert report.remote_outputs[1]["tags"] == ["x"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", report.address)
    assert_conforms(Noop(), {"value": 1})


def test_sync_plugins_conform_when_the_thread_name_is_ignored() -> None:
    # The thread name differs in-process and remotely: leave it out of the comparison.
    assert_conforms(SyncEcho, {"text": "t"}, ignore_fields=["thread"])
    with pytest.raises(ConformanceError, match=r"outputs differ .* in thread"):
        assert_conforms(SyncEcho, {"text": "t"})


def test_error_cases_fail_the_same_way_in_process_and_remotely() -> None:
    assert_conforms(Fail, [], error_cases=[
        ErrorCase({"kind": "transient", "hint": "Wait"}, TransientError, hint="Wait"),
        ErrorCase({"kind": "permanent", "message": "no"}, PermanentError),
        ({"kind": "intervention"}, Exception),  # a tuple works too; a superclass counts
    ])
    assert_conforms(Crash, [], error_cases=[({}, ZeroDivisionError)])


def test_an_error_case_that_does_not_fail_is_reported() -> None:
    with pytest.raises(ConformanceError) as caught:
        assert_conforms(Echo, {"text": "ok"},
                        error_cases=[ErrorCase({"text": "fine"}, TransientError)])
    text = str(caught.value)
    assert caught.value.__context__ is None  # no unrelated "no running event loop" above it
    assert "in-process with {'text': 'fine'}: expected TransientError, but it succeeded" in text
    assert "over gRPC with {'text': 'fine'}: expected TransientError, but it succeeded" in text


def test_the_wrong_error_class_or_hint_is_reported() -> None:
    with pytest.raises(ConformanceError) as caught:
        assert_conforms(Fail, [], error_cases=[
            ErrorCase({"kind": "permanent"}, TransientError),
            ErrorCase({"kind": "transient", "hint": "A"}, TransientError, hint="B"),
        ])
    text = str(caught.value)
    assert "(2 problems)" in text
    assert "expected TransientError, got PermanentError: it broke" in text
    assert "expected the hint 'B', got 'A'" in text


def test_a_plugin_whose_errors_lose_their_kind_remotely_is_reported() -> None:
    class Odd(TransientError):
        kind = "sometimes"  # type: ignore[assignment]  # not a kind the protocol knows

    class Quirky(Plugin):
        name = "quirky"

        class Inputs(BaseModel):
            pass

        class Outputs(BaseModel):
            pass

        async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
            raise Odd("odd")

    with pytest.raises(ConformanceError, match="the error differs from in-process"):
        assert_conforms(Quirky, [], error_cases=[({}, Odd)])


def test_nothing_to_check_is_reported() -> None:
    with pytest.raises(ConformanceError, match="give at least one sample"):
        assert_conforms(Echo, [])


def test_crashes_and_plugin_errors_round_trip() -> None:
    class Both(Plugin):
        name = "both"
        version = "1.0.0"

        class Inputs(BaseModel):
            mode: str = "ok"

        class Outputs(BaseModel):
            fine: bool

        def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
            if inputs.mode == "crash":
                raise KeyError("missing")
            if inputs.mode == "transient":
                raise TransientError("busy", hint="Try later", retry_after=1)
            return self.Outputs(fine=True)

    assert_conforms(Both, {}, error_cases=[
        ErrorCase({"mode": "crash"}, KeyError),
        ErrorCase({"mode": "transient"}, TransientError, hint="Try later"),
    ])


def test_outputs_that_change_between_runs_are_reported() -> None:
    counter = itertools.count()

    class Counter(Plugin):
        name = "counter"
        version = "1.0.0"

        class Inputs(BaseModel):
            pass

        class Outputs(BaseModel):
            n: int

        async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
            return self.Outputs(n=next(counter))

    with pytest.raises(ConformanceError, match=r"sample 1: outputs differ in-process and over "
                                               r"gRPC in n"):
        assert_conforms(Counter, {})
    assert_conforms(Counter, {}, normalize=lambda outputs: {})


def test_an_incomplete_plugin_class_is_reported() -> None:
    class Incomplete(Plugin):
        name = "incomplete"

    with pytest.raises(ConformanceError) as caught:
        assert_conforms(Incomplete, {})
    assert "`Inputs` must be a pydantic BaseModel subclass" in str(caught.value)


def test_inputs_the_model_rejects_are_reported() -> None:
    with pytest.raises(ConformanceError, match="inputs or outputs rejected by the models"):
        assert_conforms(Echo, {"tags": "not a list"})


def test_plugins_whose_outputs_break_their_model_are_reported() -> None:
    class Broken(Plugin):
        name = "broken-outputs"

        class Inputs(BaseModel):
            pass

        class Outputs(BaseModel):
            n: int

        async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Any:
            return {"n": "many"}

    with pytest.raises(ConformanceError) as caught:
        assert_conforms(Broken, {})
    text = str(caught.value)
    assert "in-process" in text and "over gRPC" in text and "field 'n'" in text


async def test_it_works_inside_a_running_event_loop() -> None:
    report = assert_conforms(Echo, {"text": "from an async test"})
    assert report.remote_outputs[0]["text"] == "from an async test"
    again = await check_conformance(Noop, {"value": 2})
    assert again.remote_outputs == [{"value": 3}]


def test_inputs_given_as_a_function_are_made_again_for_each_invocation(tmp_path: Any) -> None:
    """What the module docstring promises: called before the in-process run and again
    before the run over gRPC, so a folder it makes is new each time."""
    import tempfile
    from pathlib import Path

    made: list[str] = []

    def fresh() -> dict[str, Any]:
        made.append(tempfile.mkdtemp(dir=tmp_path))
        return {"text": made[-1]}

    report = assert_conforms(Echo, fresh, ignore_fields=["text", "length"])
    assert len(made) == 2 and made[0] != made[1]
    assert all(Path(folder).is_dir() for folder in made)
    assert [out["text"] for out in (*report.local_outputs, *report.remote_outputs)] == made
