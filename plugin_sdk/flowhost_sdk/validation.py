"""What a plugin returned, as its ``Outputs``; pydantic errors as one readable line.

Shared by everything that calls a plugin class directly: the host's in-process invoker, the
plugin server and the conformance kit, so all three accept and reject the same results.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def as_outputs(outputs_model: type[BaseModel], result: Any) -> BaseModel:
    """``result`` as an ``outputs_model`` instance: that instance itself, the fields of
    another model, or a mapping. Raises pydantic's ValidationError when it does not fit."""
    if type(result) is outputs_model:
        return result
    if isinstance(result, BaseModel):
        result = result.model_dump()
    return outputs_model.model_validate(result)


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """``what: field 'a.b': message; ...`` for the first few errors of ``exc``."""
    errors = exc.errors(include_url=False)
    parts = [f"field '{'.'.join(str(p) for p in e['loc']) or '(root)'}': {e['msg']}"
             for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"{what}: " + "; ".join(parts) + more
