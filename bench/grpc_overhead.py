"""What a remote step costs over the gRPC call it makes: loopback, a no-op plugin.

A ``flowhost-plugin serve noop`` process listens on 127.0.0.1. In one event loop (as in the
daemon, so the channel is reused across runs), interleaved:

- raw: the same ``Invoke`` request (same payload bytes) as a plain grpcio aio unary call;
- flowhost: a chain of remote no-op steps through the engine (resolve the reference, the
  ladder, the call with its deadline, JSON and output-schema validation, events).

Prints the per-call median of both and their ratio (target <= 1.2x), then steps per second
with 1, 8 and 64 remote steps at once (a fan-out at --max-parallel N), beside raw calls at
the same concurrency.

    python bench/grpc_overhead.py [--steps 500] [--repeats 7] [--fanout 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from _common import now

from flowhost.catalog import Catalog
from flowhost.config import HostConfig
from flowhost.engine import Engine
from flowhost.events import EventBus
from flowhost.plan import Plan
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

READY = re.compile(r" on (\S+):(\d+)")


def start_server() -> tuple[subprocess.Popen[str], str]:
    script = Path(sys.executable).parent / "flowhost-plugin"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flowhost_sdk"]
    proc = subprocess.Popen([*command, "serve", "noop", "--listen", "127.0.0.1:0",
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    assert proc.stdout is not None
    match = READY.search(proc.stdout.readline())
    if match is None:
        proc.kill()
        raise SystemExit("flowhost-plugin did not start")
    return proc, f"{match[1]}:{match[2]}"


def chain_spec(url: str, steps: int) -> str:
    lines = ["workflow_id: bench-remote-chain", "steps:",
             f"  - {{id: s0, plugin: '{url}', inputs: {{value: 0}}, cache: false, timeout: 30}}"]
    lines += [f"  - {{id: s{i}, plugin: '{url}', inputs: {{value: $s{i - 1}.value}}, "
              f"cache: false, timeout: 30}}" for i in range(1, steps)]
    return "\n".join(lines) + "\n"


def fanout_spec(url: str, steps: int) -> str:
    lines = ["workflow_id: bench-remote-fanout", "steps:"]
    lines += [f"  - {{id: s{i}, plugin: '{url}', inputs: {{value: {i}}}, cache: false, "
              f"timeout: 30}}" for i in range(steps)]
    return "\n".join(lines) + "\n"


async def plan_of(text: str, catalog: Catalog) -> Plan:
    # Asking the server for its plugins is blocking: off the loop.
    return await asyncio.to_thread(check, parse_spec(text), catalog, {})


async def engine_run(plan: Plan, max_parallel: int) -> float:
    engine = Engine(plan, EventBus(), env={}, max_parallel=max_parallel)
    start = now()
    status = await engine.run()
    elapsed = now() - start
    assert status == "success", status
    return elapsed


async def raw_calls(address: str, calls: int, concurrency: int = 1) -> float:
    from grpc import aio

    async with aio.insecure_channel(address) as channel:
        invoke = channel.unary_unary(protocol.INVOKE,
                                     request_serializer=pb.InvokeRequest.SerializeToString,
                                     response_deserializer=pb.InvokeResponse.FromString)
        request = pb.InvokeRequest(plugin="noop", inputs_json=b'{"value": 1}', run_id="r",
                                   step_id="s", attempt=1)
        await invoke(request, timeout=30)  # connected before timing
        start = now()
        if concurrency == 1:
            for _ in range(calls):
                await invoke(request, timeout=30)
        else:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    await invoke(request, timeout=30)

            await asyncio.gather(*(one() for _ in range(calls)))
        return now() - start


async def main_async(args: argparse.Namespace, address: str) -> None:
    url = f"grpc://{address}/noop"
    catalog = Catalog(HostConfig())
    chain = await plan_of(chain_spec(url, args.steps), catalog)
    n = args.steps
    await engine_run(chain, 8)  # warm up: imports, the channel, caches
    await raw_calls(address, n)
    raw: list[float] = []
    steps: list[float] = []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both
        raw.append(await raw_calls(address, n) / n)
        steps.append(await engine_run(chain, 8) / n)
    raw_median, step_median = statistics.median(raw), statistics.median(steps)
    print(f"loopback, no-op plugin in another process; chain of {n} steps, {args.repeats} "
          "repeats, per call")
    print(f"  raw grpcio aio unary call: median {raw_median * 1e6:7.1f} us  "
          f"best {min(raw) * 1e6:7.1f} us")
    print(f"  flowhost remote step     : median {step_median * 1e6:7.1f} us  "
          f"best {min(steps) * 1e6:7.1f} us")
    print(f"  ratio step/raw: median {step_median / raw_median:.2f}x, "
          f"best {min(steps) / min(raw):.2f}x (target <= 1.2x)")

    fan = await plan_of(fanout_spec(url, args.fanout), catalog)
    print(f"throughput: a fan-out of {args.fanout} remote no-op steps")
    for parallel in (1, 8, 64):
        await engine_run(fan, parallel)
        best_engine = min([await engine_run(fan, parallel) for _ in range(3)])
        best_raw = min([await raw_calls(address, args.fanout, parallel) for _ in range(3)])
        print(f"  {parallel:2d} at once: {args.fanout / best_engine:8.0f} steps/s  "
              f"(raw calls: {args.fanout / best_raw:8.0f}/s, ratio "
              f"{best_engine / best_raw:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--fanout", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    proc, address = start_server()
    try:
        asyncio.run(main_async(args, address))
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
