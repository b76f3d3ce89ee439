"""The wire rules shared by the plugin server and every client (CONTRACT §3)."""

from __future__ import annotations

import grpc
import pytest

from flowhost_sdk import NeedsIntervention, PermanentError, PluginError, TransientError
from flowhost_sdk.protocol import (
    HINT_KEY,
    KIND_KEY,
    RETRY_AFTER_KEY,
    TYPE_KEY,
    decode_text,
    encode_text,
    error_from_status,
    status_for_error,
)

Code = grpc.StatusCode


@pytest.mark.parametrize(("code", "kind"), [
    (Code.UNAVAILABLE, "transient"),
    (Code.DEADLINE_EXCEEDED, "transient"),
    (Code.RESOURCE_EXHAUSTED, "transient"),
    (Code.ABORTED, "transient"),
    (Code.UNKNOWN, "transient"),  # from the transport
    (Code.CANCELLED, "transient"),
    (Code.INVALID_ARGUMENT, "permanent"),
    (Code.NOT_FOUND, "permanent"),
    (Code.FAILED_PRECONDITION, "permanent"),
    (Code.UNIMPLEMENTED, "permanent"),
    (Code.INTERNAL, "permanent"),
    (Code.PERMISSION_DENIED, "permanent"),
    (Code.UNAUTHENTICATED, "permanent"),
])
def test_status_codes_map_to_kinds(code: grpc.StatusCode, kind: str) -> None:
    error = error_from_status(code, "something", None)
    assert error.kind == kind
    assert str(error) == "something"
    assert error.hint is None


@pytest.mark.parametrize("kind", ["transient", "permanent", "intervention"])
@pytest.mark.parametrize("code", [Code.UNAVAILABLE, Code.INTERNAL, Code.FAILED_PRECONDITION])
def test_the_error_kind_metadata_overrides_the_code(code: grpc.StatusCode, kind: str) -> None:
    error = error_from_status(code, "x", [(KIND_KEY, kind), (HINT_KEY, "Do this")])
    assert error.kind == kind
    assert error.hint == "Do this"
    expected = {"transient": TransientError, "permanent": PermanentError,
                "intervention": NeedsIntervention}[kind]
    assert isinstance(error, expected)


def test_an_unknown_kind_falls_back_to_the_code() -> None:
    assert error_from_status(Code.UNAVAILABLE, "x", [(KIND_KEY, "maybe")]).kind == "transient"


def test_an_exception_in_a_python_server_handler_is_permanent() -> None:
    error = error_from_status(Code.UNKNOWN, "Exception calling application: boom", None)
    assert error.kind == "permanent"


def test_a_message_past_the_size_limit_is_permanent_with_a_hint() -> None:
    error = error_from_status(Code.RESOURCE_EXHAUSTED,
                              "Received message larger than max (20 vs. 10)", None)
    assert error.kind == "permanent"
    assert error.hint is not None and "--max-message-bytes" in error.hint
    assert error_from_status(Code.RESOURCE_EXHAUSTED, "quota", None).kind == "transient"


def test_retry_after_and_the_error_type_come_back() -> None:
    error = error_from_status(Code.UNAVAILABLE, "RateLimited: slow down",
                              [(KIND_KEY, "transient"), (TYPE_KEY, "RateLimited"),
                               (RETRY_AFTER_KEY, "2.5")])
    assert isinstance(error, TransientError)
    assert error.retry_after == 2.5
    assert type(error).__name__ == "RateLimited"
    assert str(error) == "slow down"
    again = error_from_status(Code.UNAVAILABLE, "x", [(TYPE_KEY, "RateLimited")])
    assert type(again) is type(error)  # one class per name


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan", "-inf", "1e999", "", "NaN",
                                   b"\xff", 7])
def test_a_bad_retry_after_is_ignored(value: str | bytes | int) -> None:
    error = error_from_status(Code.UNAVAILABLE, "x", [(RETRY_AFTER_KEY, value)])
    assert isinstance(error, TransientError)
    assert error.retry_after is None


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), -0.5])
def test_a_retry_after_that_is_not_a_finite_pause_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="retry_after must be a finite number of seconds >= 0"):
        TransientError("x", retry_after=value)


def test_a_retry_after_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="retry_after must be a number of seconds, not str"):
        TransientError("x", retry_after="5")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 0.25, 3, 1e308])
def test_a_finite_retry_after_is_kept(value: float) -> None:
    assert TransientError("x", retry_after=value).retry_after == value


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def _odd_transient() -> TransientError:
    error = TransientError("odd", hint="Wait")
    error.retry_after = float("inf")  # set after the checks of __init__
    error.hint = 42  # type: ignore[assignment]
    return error


def _odd_kind() -> PluginError:
    error = PermanentError("odd kind")
    error.kind = ["transient"]  # type: ignore[assignment,misc]
    return error


@pytest.mark.parametrize("exc", [_Unprintable(), _odd_transient(), _odd_kind(),
                                 ValueError("caf\udce9"), KeyboardInterrupt(), SystemExit(3),
                                 PermanentError("x", hint="caf\udce9")])
def test_status_for_error_reports_anything(exc: BaseException) -> None:
    code, details, metadata = status_for_error(exc)
    assert isinstance(code, grpc.StatusCode)
    details.encode("utf-8")  # gRPC can send it
    assert all(value.isascii() for _, value in metadata)
    assert RETRY_AFTER_KEY not in dict(metadata)
    back = error_from_status(code, details, metadata)
    assert back.kind in ("transient", "permanent")


def test_a_lone_surrogate_travels_escaped() -> None:
    code, details, metadata = status_for_error(PermanentError("caf\udce9", hint="caf\udce9"))
    assert details == "caf\\udce9"
    assert decode_text(dict(metadata)[HINT_KEY]) == "caf\\udce9"
    assert "\\udce9" in str(error_from_status(code, details, metadata))


def test_an_interpreter_exit_is_reported_like_any_bug() -> None:
    assert status_for_error(KeyboardInterrupt("stop"))[:2] == (Code.INTERNAL,
                                                               "KeyboardInterrupt: stop")


def test_a_type_name_that_is_not_an_identifier_is_not_used() -> None:
    error = error_from_status(Code.INTERNAL, "x", [(TYPE_KEY, "no such; thing")])
    assert type(error) is PermanentError


@pytest.mark.parametrize(("exc", "code", "kind"), [
    (TransientError("locked", hint="Wait", retry_after=3), Code.UNAVAILABLE, "transient"),
    (PermanentError("bad"), Code.FAILED_PRECONDITION, "permanent"),
    (NeedsIntervention("who?", hint="Ask"), Code.FAILED_PRECONDITION, "intervention"),
    (ValueError("nope"), Code.INTERNAL, "permanent"),
])
def test_server_side_errors_round_trip(exc: Exception, code: grpc.StatusCode,
                                       kind: str) -> None:
    sent_code, details, metadata = status_for_error(exc)
    assert sent_code is code
    assert dict(metadata)[KIND_KEY] == kind
    back = error_from_status(sent_code, details, metadata)
    assert (back.kind, str(back), type(back).__name__) == (kind, str(exc), type(exc).__name__)
    assert back.hint == getattr(exc, "hint", None)
    assert getattr(back, "retry_after", None) == getattr(exc, "retry_after", None)


def test_an_exception_without_text_keeps_an_empty_message() -> None:
    back = error_from_status(*status_for_error(KeyError()))
    assert (type(back).__name__, str(back), back.kind) == ("KeyError", "", "permanent")


def test_a_custom_error_class_keeps_its_kind() -> None:
    class Locked(TransientError):
        pass

    code, _, metadata = status_for_error(Locked("busy"))
    assert code is Code.UNAVAILABLE
    assert dict(metadata)[TYPE_KEY] == "Locked"
    assert isinstance(error_from_status(code, "busy", metadata), PluginError)


@pytest.mark.parametrize("text", ["plain ascii", "Start Redis — now", "100% sure", "日本", "a\nb"])
def test_metadata_text_is_ascii_and_round_trips(text: str) -> None:
    encoded = encode_text(text)
    assert encoded.isascii() and all(0x20 <= ord(c) < 0x7F for c in encoded)
    assert decode_text(encoded) == text
    assert decode_text(encoded.encode()) == text
