"""``http_ok``: GET a URL and compare the status, without a proxy for loopback hosts."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import re
import urllib.error
import urllib.parse
import urllib.request

from pydantic import Field, field_validator

from flowhost.checks.base import CheckContext, _Args
from flowhost.checks.formatting import short
from flowhost.events import CheckResult


class HttpOkArgs(_Args):
    shorthand_field = "url"
    url: str = Field(min_length=1)
    status: int = Field(200, ge=100, le=599)
    timeout: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if "$" not in value and not re.match(r"https?://", value, re.IGNORECASE):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value


class _HttpError(Exception):
    pass


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_get(url: str, timeout: float) -> tuple[int, str]:
    """GET ``url``: (status, start of the body); raises _HttpError when there is no answer."""
    request = urllib.request.Request(url, headers={"User-Agent": "flowhost-check"})
    # a proxy from the environment must not stand between us and a local service
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(500).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                body = exc.read(500).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                body = ""
            return exc.code, body
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise _HttpError("connection refused") from exc
        if isinstance(reason, TimeoutError):
            raise _HttpError(f"no response within {timeout:g} s") from exc
        raise _HttpError(str(getattr(reason, "strerror", None) or reason)) from exc
    except TimeoutError as exc:
        raise _HttpError(f"no response within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _HttpError(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        raise _HttpError(f"invalid URL: {exc}") from exc


class HttpOk:
    kind = "http_ok"
    Args = HttpOkArgs

    async def run(self, args: HttpOkArgs, ctx: CheckContext) -> CheckResult:
        try:
            status, body = await asyncio.wait_for(
                asyncio.to_thread(_http_get, args.url, args.timeout), args.timeout + 5
            )
        except TimeoutError:
            return CheckResult(
                self.kind, False, f"GET {args.url}: no response within {args.timeout:g} s"
            )
        except _HttpError as exc:
            return CheckResult(self.kind, False, f"GET {args.url}: {exc}")
        if status != args.status:
            message = f"GET {args.url} returned {status}, expected {args.status}"
            shown = short(ctx.redact(body), 300)  # masked whole, before it is cut
            return CheckResult(self.kind, False, message,
                               details={"status": status, "body": shown})
        return CheckResult(self.kind, True, f"GET {args.url} returned {status}")
