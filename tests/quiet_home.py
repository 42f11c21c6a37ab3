"""Running a snippet in a fresh process whose home folder is empty, to see what it leaves there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_with_empty_home(code: str, home: Path, project_root: Path) -> str:
    """Run ``code`` with ``home`` as HOME and no CI variables (packages that phone home stop in CI);
    its stdout."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(project_root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                         cwd=project_root)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout
