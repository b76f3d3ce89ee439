"""Invoke a plugin class imported in this process."""

from __future__ import annotations

import asyncio
import inspect
import math
from concurrent.futures import Executor
from typing import Any

from pydantic import BaseModel, ValidationError

from flowhost.invokers import (
    InvalidInputs,
    InvalidOutputs,
    Transport,
    unencodable_field,
    unencodable_outputs,
)
from flowhost.threads import shared_executor
from flowhost_sdk import InvocationContext, Plugin
from flowhost_sdk.validation import as_outputs, describe_validation_error


class LocalInvoker:
    transport: Transport = "local"

    def __init__(self, plugin: Plugin, executor: Executor | None = None) -> None:
        cls = type(plugin)
        self.plugin = plugin
        self.name = cls.name
        self.version = cls.version
        self.description = cls.description
        self.idempotent = bool(cls.idempotent)
        self._inputs_model: type[BaseModel] = cls.Inputs
        self._outputs_model: type[BaseModel] = cls.Outputs
        self.input_schema = cls.Inputs.model_json_schema()
        self.output_schema = cls.Outputs.model_json_schema()
        self._is_async = inspect.iscoroutinefunction(plugin.invoke)
        self._executor = executor or shared_executor()

    async def invoke(self, inputs: dict[str, Any], ctx: InvocationContext) -> dict[str, Any]:
        try:
            # The validator itself, as ``model_validate`` calls it (one Python call fewer
            # per step); a model that defers its build builds it on this first access.
            model = self._inputs_model.__pydantic_validator__.validate_python(inputs)
        except ValidationError as exc:
            raise InvalidInputs(
                describe_validation_error(exc, f"inputs rejected by {self.name}")
            ) from None
        if self._is_async:
            result = await self.plugin.invoke(model, ctx)  # type: ignore[misc]
        else:
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(
                    self._executor, self.plugin.invoke, model, ctx
                )
            except asyncio.CancelledError:
                ctx.cancel()  # the thread cannot be stopped; tell a polling plugin to stop
                raise
            if inspect.isawaitable(result):
                result = await result
        outputs_model = self._outputs_model
        try:
            if type(result) is not outputs_model:  # the common case skips the call
                result = as_outputs(outputs_model, result)
        except ValidationError as exc:
            raise InvalidOutputs(
                describe_validation_error(exc, f"outputs of {self.name} do not match its Outputs")
            ) from None
        # ``model_dump(mode="json")`` without its Python wrapper
        dumped: dict[str, Any] = result.__pydantic_serializer__.to_python(result, mode="json")
        if not _plain(dumped):  # (the usual flat outputs need neither walk)
            _check_outputs(self.name, dumped)
        return dumped


def _plain(outputs: dict[str, Any]) -> bool:
    """Whether ``outputs`` is flat, with ASCII keys and texts and finite numbers: then
    neither ``unencodable_field`` nor ``non_finite_field`` can find anything in it."""
    for key, value in outputs.items():
        kind = type(value)
        if type(key) is not str or not key.isascii():
            return False
        if kind is str:
            if not value.isascii():
                return False
        elif kind is float:
            if not -math.inf < value < math.inf:  # (NaN is not either)
                return False
        elif kind is not int and kind is not bool and value is not None:
            return False
    return True


def _check_outputs(plugin: str, dumped: dict[str, Any]) -> None:
    """Refuse outputs that hold text that is not Unicode, NaN or Infinity."""
    bad = unencodable_field(dumped)
    if bad is not None:
        raise unencodable_outputs(plugin, bad)
    number = non_finite_field(dumped)
    if number is not None:
        where, value = number
        raise InvalidOutputs(
            f"outputs of {plugin}: field '{where}' is {value}, which is not a JSON "
            "value (JSON has no NaN or Infinity)",
            hint="Return a finite number (math.isfinite), or None where the Outputs "
                 "allow it")


def non_finite_field(value: Any) -> tuple[str, str] | None:
    """The dotted path and name (NaN, Infinity) of the first NaN or infinite number in JSON-like
    ``value`` (a pydantic ``float`` takes them), or None. Nothing that reads JSON (the
    store, the result, other languages) takes them. Iterative: any depth is fine."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                name = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
                return path or "(root)", name
        elif isinstance(item, dict):
            pending.extend((f"{path}.{key}" if path else str(key), inner)
                           for key, inner in reversed(item.items()))
        elif isinstance(item, list | tuple):
            pending.extend((f"{path}.{index}" if path else str(index), inner)
                           for index, inner in reversed(list(enumerate(item))))
    return None
