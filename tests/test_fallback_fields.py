"""A bad fallback is reported where it is: ``fallback.N.plugin``, ``fallback.N.inputs``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPEC = """workflow_id: f
steps:
  - id: a
    plugin: noop
    fallback:
      - {plugin: echo}
      - {plugin: nosuch}
"""


def test_a_bad_fallback_is_named_by_its_place(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "validate", "wf.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "wf.yaml:6: step 'a', field 'fallback.0.inputs': fallback echo requires input " \
           "'text'" in done.stderr
    assert "wf.yaml:7: step 'a', field 'fallback.1.plugin': plugin 'nosuch': no plugin of " \
           "that name is installed" in done.stderr
