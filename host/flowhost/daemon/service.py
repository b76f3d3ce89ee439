"""``flowhost.v1.HostService``: the daemon's RPCs (CONTRACT §8), over the journal and the
supervisor. Errors are status codes: INVALID_ARGUMENT (a bad spec: the CLI's message),
NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE while the daemon drains."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from grpc import aio

from flowhost._proto import host_pb2 as pb
from flowhost.daemon import records
from flowhost.daemon.auth import Authenticator
from flowhost.daemon.journal import Journal, Tails, ends_run
from flowhost.daemon.supervisor import Supervisor
from flowhost.files import MAX_SPEC_BYTES
from flowhost.problems import StorageError
from flowhost.redact import MASK
from flowhost.store import RunRecord
from flowhost.store.rows import SEQ_BITS
from flowhost_sdk import protocol

Context = aio.ServicerContext[Any, Any]
MAX_OVERRIDES = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
ACTIONS = ("retry", "skip", "abort")
_TOKEN_PREFIX = "r1:"
LAST_SEQ = (1 << SEQ_BITS) - 1


class _Failure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(message: str) -> _Failure:
    return _Failure(grpc.StatusCode.INVALID_ARGUMENT, message)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past what a double holds")
    return value


def encode_page_token(run_no: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{run_no}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text[len(_TOKEN_PREFIX):]
    # (18 digits: any run number there is; more would not fit SQLite's integers)
    if not text.startswith(_TOKEN_PREFIX) or not number.isdigit() or len(number) > 18:
        raise _invalid("page_token: not a token this daemon gave (pass next_page_token of "
                       "the previous page as it is)")
    return int(number)


class HostService:
    def __init__(self, journal: Journal, tails: Tails, supervisor: Supervisor,
                 authenticator: Authenticator) -> None:
        self.journal = journal
        self.tails = tails
        self.supervisor = supervisor
        self.auth = authenticator
        self.draining = False
        self._submitting: dict[str, asyncio.Future[records.Accepted]] = {}

    async def _call(self, context: Context, work: Any) -> Any:
        try:
            return await work
        except _Failure as failure:
            await _abort(context, failure.code, failure.message)
        except records.NotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except records.Refused as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except StorageError as exc:  # the store is busy or failing: worth trying again
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    # -- SubmitRun ---------------------------------------------------------------------
    async def SubmitRun(self, request: pb.SubmitRunRequest,  # noqa: N802 - gRPC's names
                        context: Context) -> pb.SubmitRunResponse:
        accepted: records.Accepted = await self._call(context, self._submit(request))
        return pb.SubmitRunResponse(run_id=accepted.record.run_id, created=accepted.created)

    async def _submit(self, request: pb.SubmitRunRequest) -> records.Accepted:
        self._refuse_when_draining()
        which = request.WhichOneof("spec")
        if which is None:
            raise _invalid("no spec: set spec_yaml or spec_json")
        text = request.spec_yaml if which == "spec_yaml" else request.spec_json
        if len(text.encode("utf-8")) > MAX_SPEC_BYTES:
            raise _invalid(f"the spec is larger than {MAX_SPEC_BYTES} bytes")
        if len(request.overrides) > MAX_OVERRIDES:
            raise _invalid(f"more than {MAX_OVERRIDES} overrides")
        name = request.spec_name or ("submitted.json" if which == "spec_json"
                                     else "submitted.yaml")
        if len(name) > 255 or "\n" in name or "\0" in name:
            raise _invalid("spec_name: a file name of at most 255 characters on one line")
        overrides = [f"{target}={value}" for target, value in sorted(request.overrides.items())]
        request_id = request.request_id or f"anonymous:{uuid.uuid4().hex}"
        if len(request_id) > 512:
            raise _invalid("request_id: at most 512 characters")
        going = self._submitting.get(request_id)
        if going is not None:  # the same request, at the same moment: one run
            first = await asyncio.shield(going)
            return records.Accepted(first.record, False)
        future: asyncio.Future[records.Accepted] = asyncio.get_running_loop().create_future()
        self._submitting[request_id] = future
        try:
            accepted = await self._accept(request_id, text, name, overrides)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: only repeats waiting on it see it
            raise
        finally:
            del self._submitting[request_id]
        future.set_result(accepted)
        return accepted

    async def _accept(self, request_id: str, text: str, name: str,
                      overrides: list[str]) -> records.Accepted:
        earlier = await self.journal.call(records.submitted, request_id)
        if earlier is not None:
            return records.Accepted(earlier, False)
        answer = await self.supervisor.checker.ask(
            {"op": "check", "text": text, "spec_name": name, "overrides": overrides})
        if not answer.get("ok"):
            raise _invalid(str(answer.get("message") or "the spec does not check"))
        self._refuse_when_draining()
        accepted: records.Accepted = await self.journal.call(
            _accept_checked, request_id, {**answer, "spec_name": name})
        if accepted.created:
            self.supervisor.enqueue(accepted.record)
        return accepted

    def _refuse_when_draining(self) -> None:
        if self.draining:
            raise _Failure(grpc.StatusCode.UNAVAILABLE, "the daemon is stopping and accepts "
                           "no new runs; submit again once it is back")

    # -- GetRun, ListRuns ----------------------------------------------------------------
    async def GetRun(self, request: pb.GetRunRequest,  # noqa: N802
                     context: Context) -> pb.GetRunResponse:
        data = await self._call(context, self._result(request.run_id))
        return pb.GetRunResponse(result_json=data)

    async def _result(self, run_id: str) -> bytes:
        return await self.journal.result_json(_run_id(run_id))

    async def _find(self, run_id: str) -> RunRecord:
        return await self.journal.find(_run_id(run_id))

    async def ListRuns(self, request: pb.ListRunsRequest,  # noqa: N802
                       context: Context) -> pb.ListRunsResponse:
        return await self._call(context, self._list(request))  # type: ignore[no-any-return]

    async def _list(self, request: pb.ListRunsRequest) -> pb.ListRunsResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise _invalid(f"page_size: from 1 to {MAX_PAGE} (0: {DEFAULT_PAGE})")
        size = request.page_size or DEFAULT_PAGE
        before = decode_page_token(request.page_token) if request.page_token else None
        found, more = await self.journal.page(before, size, request.status,
                                              request.workflow_id)
        runs = [pb.RunSummary(run_id=s.run_id, workflow_id=s.workflow_id, status=s.status,
                              started_at=s.started_at, finished_at=s.finished_at,
                              steps_total=s.steps_total, steps_done=s.steps_done)
                for s in found]
        token = encode_page_token(found[-1].run_no) if more and found else ""
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    # -- WatchRun --------------------------------------------------------------------------
    async def WatchRun(self, request: pb.WatchRunRequest,  # noqa: N802
                       context: Context) -> AsyncIterator[pb.RunEvent]:
        if request.after_seq < 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "after_seq: 0 or more")
        record = await self._call(context, self._find(request.run_id))
        # (past the last seq a run can have, there is no event: nor a number SQLite holds)
        cursor = min(request.after_seq, LAST_SEQ)
        async for event in self.tails.follow(record, cursor):
            cursor = event.seq
            yield pb.RunEvent(run_id=event.run_id, seq=event.seq, type=type(event).__name__,
                              step_id=getattr(event, "step_id", "") or "", at=event.ts,
                              event_json=records.event_json(event))
            if ends_run(event):
                return
        if self.tails.stopping.is_set():
            await _abort(context, grpc.StatusCode.UNAVAILABLE,
                         f"the daemon is stopping; watch again with after_seq={cursor}")

    # -- ResolveIntervention, CancelRun ----------------------------------------------------
    async def ResolveIntervention(  # noqa: N802
            self, request: pb.ResolveInterventionRequest,
            context: Context) -> pb.ResolveInterventionResponse:
        decision = await self._call(context, self._resolve(request, self.auth.identity(context)))
        return pb.ResolveInterventionResponse(resolved_by=decision.by, resolved_at=decision.ts)

    async def _resolve(self, request: pb.ResolveInterventionRequest, by: str) -> Any:
        if request.action not in ACTIONS:
            raise _invalid(f"action: retry, skip or abort (got {request.action!r})")
        outputs: dict[str, Any] | None = None
        if request.outputs_json:
            if request.action != "skip":
                raise _invalid("outputs_json goes with the action skip only: the outputs "
                               "stand in for those of the skipped step")
            try:
                # NaN, Infinity and 1e999 are no JSON value a step's outputs can hold
                outputs = json.loads(request.outputs_json, parse_float=_finite,
                                     parse_constant=protocol.reject_constant)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _invalid(f"outputs_json: not valid JSON ({exc})") from None
            except RecursionError:
                raise _invalid("outputs_json: nested too deep") from None
            if not isinstance(outputs, dict):
                raise _invalid("outputs_json: must be a JSON object")
        if len(request.comment) > 10_000:
            raise _invalid("comment: at most 10,000 characters")
        run_id, step_id = _run_id(request.run_id), request.step_id
        record = await self.journal.call(records.question, run_id, step_id)
        if outputs is not None:
            answer = await self.supervisor.checker.ask(
                {"op": "outputs", "spec_text": record.spec_text, "spec_path": record.spec_path,
                 "overrides": record.overrides, "step_id": step_id, "outputs": outputs})
            if not answer.get("ok"):
                raise _invalid(str(answer.get("message")))
        comment = await self._masked(record, request.comment)
        answered: records.Answered = await self.journal.call(
            records.decide, run_id, step_id, request.action, outputs, comment, by)
        self.tails.poke()
        if answered.goes_on:
            self.supervisor.enqueue(record)
        elif answered.executing:  # its worker goes on with the step at once
            await self.supervisor.decided(run_id)
        return answered.decision

    async def CancelRun(self, request: pb.CancelRunRequest,  # noqa: N802
                        context: Context) -> pb.CancelRunResponse:
        record = await self._call(context, self._find(request.run_id))
        run_id = record.run_id
        reason = await self._call(context, self._masked(record, request.reason))
        status = await self.supervisor.cancel(run_id, f"{reason or 'cancelled through the API'}"
                                              f" (by {self.auth.identity(context)})")
        return pb.CancelRunResponse(status=status)


    async def _masked(self, record: RunRecord, text: str) -> str:
        """``text`` a person gave (a comment, a reason) with the values of the run's secrets
        masked: the checker process has the environment they come from."""
        if not text or "secret." not in " ".join([record.spec_text, *record.overrides]):
            return text
        answer = await self.supervisor.checker.ask(
            {"op": "mask", "spec_text": record.spec_text, "overrides": record.overrides,
             "texts": [text]})
        return str(answer["texts"][0]) if answer.get("ok") else MASK


def _run_id(text: str) -> str:
    if not text:
        raise _invalid("run_id: required")
    if len(text) > 200:
        raise records.NotFound("no such run: the run id is too long")
    return text


def _accept_checked(store: Any, request_id: str, checked: dict[str, Any]) -> records.Accepted:
    return records.accept(store, request_id=request_id, checked=checked)


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
