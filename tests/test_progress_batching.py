"""Plain progress lines inside an event loop: written together once the loop goes idle, the
same text as line by line, and the run's last line at once."""

from __future__ import annotations

import asyncio
import io
import time

from flowhost.events import Event, RunFinished, RunStarted, StepFinished, StepStarted
from flowhost.progress import PlainProgress

T0 = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def chain(steps: int) -> list[Event]:
    events: list[Event] = [RunStarted(run_id="r", ts=T0, workflow_id="w", description="",
                                      total_steps=steps, steps=tuple(
                                          (f"s{i}", "noop", "") for i in range(steps)))]
    for i in range(steps):
        events += [StepStarted("r", f"s{i}", "noop", "", i + 1, steps, ts=T0 + i),
                   StepFinished("r", f"s{i}", "noop", "noop", "success", 1, 0.5, ts=T0 + i)]
    return [*events, RunFinished(run_id="r", ts=T0 + steps, status="success",
                                 duration_s=float(steps))]


def line_by_line(events: list[Event]) -> str:
    out = io.StringIO()
    listener = PlainProgress(out)
    for event in events:
        listener(event)
        listener.close()  # written at once, whether an event loop runs or not
    return out.getvalue()


async def test_lines_go_out_together_when_the_loop_goes_idle() -> None:
    events = chain(5)
    out = Writes()
    listener = PlainProgress(out)
    for event in events[:-1]:
        listener(event)
    assert out.getvalue() == ""  # nothing yet: the loop has not turned
    await asyncio.sleep(0)
    assert out.writes == 1
    listener(events[-1])  # RunFinished: written at once
    assert out.writes == 2
    assert out.getvalue() == line_by_line(events)


async def test_a_held_listener_first_writes_what_came_before() -> None:
    events = chain(2)
    out = io.StringIO()
    listener = PlainProgress(out)
    listener(events[0])
    listener.hold()
    assert out.getvalue() == line_by_line(events[:1])  # before the prompt, above it
    for event in events[1:]:
        listener(event)
    await asyncio.sleep(0)
    assert out.getvalue() == line_by_line(events[:1])
    listener.close()
    assert out.getvalue() == line_by_line(events)


async def test_a_long_turn_writes_in_batches() -> None:
    events = chain(300)  # 602 lines without the loop turning
    out = Writes()
    listener = PlainProgress(out)
    for event in events:
        listener(event)
    assert 2 <= out.writes <= 4
    listener.close()
    assert out.getvalue() == line_by_line(events)
