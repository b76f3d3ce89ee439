"""``--pushgateway URL``: a one-off run's metrics, pushed once when it ends (the
Prometheus convention for batch jobs: a process that is gone cannot be scraped).

The group is ``job="flowhost"`` and the workflow id: each run of a workflow replaces the
last push of that workflow, so the gateway holds one group per workflow, never one per
run. A gateway that is down or refuses costs one message, never the run's exit code.
"""

from __future__ import annotations

from urllib.error import HTTPError, URLError

from prometheus_client import CollectorRegistry, push_to_gateway
from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

from flowhost.problems import UserInputError, quote

JOB = "flowhost"
PUSH_TIMEOUT_S = 5.0  # the run is over: a gateway that does not answer must not hold it
_URL = TypeAdapter(AnyHttpUrl)


def check_gateway(url: str, flag: str = "--pushgateway") -> str:
    """``url`` when it is an http(s) URL with a host; else a ``UserInputError``."""
    try:
        parsed = _URL.validate_python(url)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise UserInputError(f"{flag} {quote(url)}: not an http(s) URL ({why}); e.g. "
                             "http://127.0.0.1:9091") from None
    try:  # what the push does with it: a label of more than 63 characters fails
        (parsed.host or "").encode("idna")
    except UnicodeError:
        raise UserInputError(f"{flag} {quote(url)}: not a valid host name (a label of 1 to "
                             "63 characters between dots); e.g. http://127.0.0.1:9091"
                             ) from None
    if parsed.query or parsed.fragment:
        raise UserInputError(f"{flag} {quote(url)}: give the gateway's base URL, without a "
                             "query or fragment (e.g. http://127.0.0.1:9091)")
    return url


def push(url: str, registry: CollectorRegistry, workflow: str) -> str | None:
    """Push ``registry`` to the gateway at ``url``; None, or why it could not."""
    try:
        push_to_gateway(url, job=JOB, registry=registry,
                        grouping_key={"workflow": workflow or "unknown"},
                        timeout=PUSH_TIMEOUT_S)
    except HTTPError as exc:
        return f"the gateway answered {exc.code} {exc.reason}"
    except URLError as exc:
        return f"cannot reach it ({exc.reason})"
    except OSError as exc:  # a timeout, a reset connection
        return f"cannot reach it ({exc.strerror or exc})"
    return None
