"""The command-line scripts (tools/, benchmarks/) import and answer --help: a rename cannot break them silently."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(str(p.relative_to(ROOT)) for d in ("tools", "benchmarks") for p in (ROOT / d).glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
    if script.endswith("execute_notebooks.py"):
        out = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True)
        assert "Usage" in out.stderr + out.stdout
        return
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
