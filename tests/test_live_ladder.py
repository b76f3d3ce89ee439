"""The live view of the ladder: a step in its backoff says what it waits for, and a
fallback's row is labelled with the fallback, also when it is the same plugin."""

from __future__ import annotations

from pathlib import Path

from terminal import on_a_terminal

BACKOFF = """
workflow_id: backoff
steps:
  - id: shaky
    plugin: flaky
    inputs: {counter_file: shaky.count, fail_times: 1, kind: transient}
    retry: {max_attempts: 3, initial_delay: 1.5}
"""

FALLBACK = """
workflow_id: falls-back
steps:
  - id: shaky
    plugin: flaky
    inputs: {counter_file: shaky.count, fail_times: 1, kind: permanent}
    fallback:
      - {plugin: sleeper, inputs: {seconds: 1.5}}
"""


def test_a_step_in_its_backoff_says_it_waits_before_the_next_attempt(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(BACKOFF, encoding="utf-8")
    screen = on_a_terminal(tmp_path, "run", "wf.yaml")[1]
    assert "before attempt 2 (2 of 3 with flaky)" in screen
    assert "retrying flaky in 1.5s (attempt 2, 2 of 3 with flaky)" in screen
    assert "✅ Workflow complete!" in screen


def test_a_fallbacks_row_names_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FALLBACK, encoding="utf-8")
    screen = on_a_terminal(tmp_path, "run", "wf.yaml")[1]
    assert "falling back to sleeper instead of flaky" in screen
    assert "attempt 2 with sleeper, fallback 1" in screen
