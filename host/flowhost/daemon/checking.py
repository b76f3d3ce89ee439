"""The daemon's side of the checker process (``flowhost.daemon.checker``), which checks
submitted specs: checking imports plugins, so it never happens in the daemon's process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from typing import TYPE_CHECKING, Any

from flowhost.daemon.environment import helper_env
from flowhost.daemon.helpers import Helper, start

if TYPE_CHECKING:
    from flowhost.daemon.supervisor import SupervisorConfig

CHECK_TIMEOUT_S = 120.0


class CheckerClient:
    """The checker process, asked one question at a time; started again when it dies."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self._helper: Helper | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    async def start(self) -> None:
        args = ["--env-allow", ",".join(self.config.env_allow), "--workdir",
                str(self.config.state_dir)]
        if self.config.config_path is not None:
            args += ["--config", str(self.config.config_path)]
        self._helper = await start("checker", "flowhost.daemon.checker", *args,
                                   env=helper_env(os.environ, self.config.env_allow))

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """The checker's answer; ``{"ok": False, "message"}`` when checking killed it."""
        async with self._lock:
            if self._helper is None or self._helper.proc.returncode is not None:
                await self.start()
            helper = self._helper
            assert helper is not None
            number = next(self._ids)
            answer: dict[str, Any] | None = None
            if await helper.channel.send({**request, "id": number}):
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(helper.channel.receive(), CHECK_TIMEOUT_S)
            if answer is not None and answer.get("id") == number:
                return answer
            helper.kill()
            reason = await helper.ended()
            self._helper = None
            what = (f"took longer than {CHECK_TIMEOUT_S:g}s" if reason == "was killed by SIGKILL"
                    else reason)
            print(f"flowhost serve: the checker {what} while checking a spec; started "
                  "again", file=sys.stderr, flush=True)
            return {"ok": False, "message": f"checking the spec stopped the checker process "
                    f"({what}): one of the plugins it uses fails when it is imported"}

    def kill(self) -> None:
        if self._helper is not None:
            self._helper.kill()

    async def close(self) -> None:
        if self._helper is not None:
            self._helper.kill()
            await self._helper.ended()
            self._helper = None
