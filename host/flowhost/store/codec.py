"""Events to JSON rows and back, generically, for every event class of ``flowhost.events``.

A row is ``(type name, step id or None, JSON payload)``: the payload holds the fields of the
event but ``run_id`` and ``seq`` (the row's key says them), ``step_id`` (its own column),
and those at their default value (an event's usual ``None``, ``False`` and ``()``).
Decoding rebuilds the same dataclasses, so ``flowhost.result.fold`` works on loaded events
as on live ones.
Converters are derived once per class from its type hints (tuples of tuples, nested
dataclasses such as ``CheckResult``); fields a newer flowhost added are ignored, and an
unknown event type is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import types
import typing
from collections.abc import Callable
from typing import Any

from flowhost import events as ev
from flowhost.problems import StorageError

Converter = Callable[[Any], Any]


def _subclasses(cls: type[ev.Event]) -> list[type[ev.Event]]:
    found: list[type[ev.Event]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


EVENT_TYPES: dict[str, type[ev.Event]] = {cls.__name__: cls for cls in _subclasses(ev.Event)}


_NESTED: dict[type, tuple[str, ...]] = {}


def _default(value: Any) -> Any:
    """JSON for what ``json`` does not know: nested dataclasses (``CheckResult``)."""
    names = _NESTED.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _NESTED[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def make_encoder(*, sort_keys: bool = False) -> Callable[[Any], str]:
    """A compact JSON encoder built once: ``json.dumps`` builds one per call, which costs
    more than encoding a small event. NaN and Infinity are a ValueError: they are no JSON
    (SQLite's JSON functions refuse them), so what holds them cannot be stored."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - Python without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default,
                                sort_keys=sort_keys, allow_nan=False).encode
    encoder = c_make_encoder(None, _default, json.encoder.encode_basestring, None, ":", ",",
                             sort_keys, False, False)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


dumps = make_encoder()


_REQUIRED = object()  # stands for "no default": such a field is always stored
Row = tuple[int, str, str | None, str]
_esc = json.encoder.encode_basestring


class _Spec:
    """What encoding and decoding one event class needs, computed once."""

    __slots__ = ("_converters", "cls", "fields", "has_step", "name", "payload", "row",
                 "stored")

    def __init__(self, cls: type[ev.Event]) -> None:
        fields = [f for f in dataclasses.fields(cls) if f.name not in ("run_id", "seq")]
        self.cls = cls
        self.name = cls.__name__
        self.fields = tuple(f.name for f in fields)
        self.has_step = "step_id" in self.fields
        # step_id has its own column; a field at its default value is left out
        kept = [f for f in fields if f.name != "step_id"]
        self.stored = tuple(f.name for f in kept)
        defaults = tuple(_REQUIRED if f.default is dataclasses.MISSING else f.default
                         for f in kept)
        self.payload, self.row = _encoders(self.name, self.stored, defaults, self.has_step)
        self._converters: dict[str, Converter] | None = None

    @property
    def converters(self) -> dict[str, Converter]:
        """How to rebuild the fields whose JSON form is not their value (tuples, nested
        dataclasses), derived from the type hints when the class is first decoded."""
        if self._converters is None:
            hints = typing.get_type_hints(self.cls, vars(ev))
            self._converters = {name: converter for name in self.fields
                                if (converter := _converter(hints[name])) is not None}
        return self._converters


def _encoders(name: str, names: tuple[str, ...], defaults: tuple[Any, ...],
              has_step: bool) -> tuple[Callable[[Any], str], Callable[[Any, int], Row]]:
    """``payload(event)``, the JSON object of an event's stored fields, and
    ``row(event, row_id)``, its ``events`` row: a loop over the class's fields (their JSON
    keys, their defaults, one getter for all of them), because they run on the checkpoint's
    path. Strings, finite floats and ints are written inline, anything else goes through
    ``dumps``; fields at their default value are left out."""
    keys = tuple("," + json.dumps(field) + ":" for field in names)
    get: Callable[[Any], tuple[Any, ...]] = (
        operator.attrgetter(*names) if len(names) > 1
        else lambda event: tuple(getattr(event, field) for field in names))

    def row(event: Any, row_id: int) -> Row:
        out = ""
        try:  # (costs nothing until it catches)
            for key, default, value in zip(keys, defaults, get(event), strict=False):
                if value is default:
                    continue
                kind = type(value)
                if kind is str:
                    out += key + _esc(value)
                elif kind is int or (kind is float and -1e308 < value < 1e308):
                    out = f"{out}{key}{value!r}"  # (repr as json writes them, without a call)
                else:  # NaN and Infinity too: dumps refuses them
                    out += key + dumps(value)
        except ValueError:
            raise _unstorable(name, names, get(event)) from None
        return (row_id, name, event.step_id if has_step else None, "{" + out[1:] + "}")

    def payload(event: Any) -> str:  # off the checkpoint's path (Store.append): no copy
        return row(event, 0)[3]

    return payload, row


def _unstorable(name: str, names: tuple[str, ...], values: tuple[Any, ...]) -> StorageError:
    """Why an event cannot be stored: the field (and where in it) holding NaN or Infinity."""
    for field, value in zip(names, values, strict=False):
        where = _not_finite(value, field)
        if where is not None:
            return StorageError(
                f"a {name} event cannot be stored: {where} holds NaN or Infinity, which JSON "
                "(and so the state store) has no way to write; the state database itself "
                "is fine. Have the plugin or check give a finite number, or null")
    return StorageError(f"a {name} event cannot be stored: a field of it is no JSON value")


def _not_finite(value: Any, where: str) -> str | None:
    """``where`` (a dotted path) of the first NaN or Infinity in ``value``, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    else:
        return None
    for key, item in items:
        found = _not_finite(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


def _converter(hint: Any) -> Converter | None:
    """A function turning the JSON form of a ``hint``-typed value back into it (None: as is)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls = hint
        hints = typing.get_type_hints(cls, vars(ev))
        nested = {f.name: c for f in dataclasses.fields(cls)
                  if (c := _converter(hints[f.name])) is not None}
        names = {f.name for f in dataclasses.fields(cls)}

        def build(value: Any) -> Any:
            data = {k: v for k, v in value.items() if k in names}
            for key, convert in nested.items():
                if key in data:
                    data[key] = convert(data[key])
            return cls(**data)

        return build
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])
            if item is None:
                return tuple
            return lambda value: tuple(item(v) for v in value)
        items = [_converter(a) for a in args]
        return lambda value: tuple(c(v) if c is not None else v
                                   for c, v in zip(items, value, strict=False))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = _converter(options[0])
            if inner is not None:
                return lambda value: None if value is None else inner(value)
    return None


SPECS: dict[type[ev.Event], _Spec] = {cls: _Spec(cls) for cls in EVENT_TYPES.values()}
_BY_NAME: dict[str, _Spec] = {spec.cls.__name__: spec for spec in SPECS.values()}


# -- the three rows every step writes ------------------------------------------------------
# Written out by hand for the usual case (a step's start, its first attempt, its success):
# a third of the generic loop's cost, and on the checkpoint's path. Anything unusual (a
# field off its default, a float that is not finite, a subclass of str or int) goes the
# generic way, which writes the same text for the usual case (a test compares the two).
_EMPTY: tuple[()] = ()
_TRANSPORTS = {"local": "", "grpc": ',"transport":"grpc"'}  # (local is the default)
_generic_started, _generic_attempt, _generic_finished = (
    SPECS[ev.StepStarted].row, SPECS[ev.AttemptStarted].row, SPECS[ev.StepFinished].row)


def _finite(value: object) -> bool:
    return type(value) is float and -1e308 < value < 1e308


def _step_started_row(e: ev.StepStarted, row_id: int) -> Row:
    if (e.rerun is not False or not _finite(e.ts) or type(e.index) is not int
            or type(e.total) is not int or type(e.plugin) is not str
            or type(e.purpose) is not str):
        return _generic_started(e, row_id)
    return (row_id, "StepStarted", e.step_id,
            f'{{"ts":{e.ts!r},"plugin":{_esc(e.plugin)},"purpose":{_esc(e.purpose)},'
            f'"index":{e.index},"total":{e.total}}}')


def _attempt_started_row(e: ev.AttemptStarted, row_id: int) -> Row:
    transport = _TRANSPORTS.get(e.transport)
    if (transport is None or not _finite(e.ts) or type(e.attempt) is not int
            or type(e.plugin) is not str):
        return _generic_attempt(e, row_id)
    return (row_id, "AttemptStarted", e.step_id,
            f'{{"ts":{e.ts!r},"plugin":{_esc(e.plugin)},"attempt":{e.attempt}{transport}}}')


def _step_finished_row(e: ev.StepFinished, row_id: int) -> Row:
    if (e.validation is not _EMPTY or e.cached is not False or e.redacted is not False
            or e.error is not None or e.error_type is not None or e.hint is not None
            or e.reason is not None or not _finite(e.ts) or not _finite(e.duration_s)
            or type(e.attempts) is not int or type(e.plugin) is not str
            or type(e.used_plugin) is not str or type(e.status) is not str):
        return _generic_finished(e, row_id)
    outputs = ""
    if e.outputs is not None:
        try:
            outputs = ',"outputs":' + dumps(e.outputs)
        except ValueError:  # NaN or Infinity in them: the generic way says where
            return _generic_finished(e, row_id)
    return (row_id, "StepFinished", e.step_id,
            f'{{"ts":{e.ts!r},"plugin":{_esc(e.plugin)},"used_plugin":{_esc(e.used_plugin)},'
            f'"status":{_esc(e.status)},"attempts":{e.attempts},'
            f'"duration_s":{e.duration_s!r}{outputs}}}')


ROWS: dict[type[ev.Event], Callable[[Any, int], Row]] = {
    **{cls: spec.row for cls, spec in SPECS.items()},
    ev.StepStarted: _step_started_row,
    ev.AttemptStarted: _attempt_started_row,
    ev.StepFinished: _step_finished_row,
}


def encode(event: ev.Event) -> tuple[str, str | None, str]:
    """``(type, step_id, payload)`` of one event."""
    spec = SPECS[type(event)]
    step_id: str | None = getattr(event, "step_id") if spec.has_step else None  # noqa: B009
    return spec.name, step_id, spec.payload(event)


def decode(run_id: str, type_name: str, step_id: str | None, payload: str,
           seq: int = 0) -> ev.Event | None:
    """The event of a row; None for a type this flowhost does not know."""
    spec = _BY_NAME.get(type_name)
    if spec is None:
        return None
    data = json.loads(payload)
    values = {name: data[name] for name in spec.fields if name in data}
    if spec.has_step:
        values["step_id"] = step_id
    for name, convert in spec.converters.items():
        if name in values:
            values[name] = convert(values[name])
    return spec.cls(run_id=run_id, seq=seq, **values)
