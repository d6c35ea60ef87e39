"""snapcam.launch: snap.py under any python3, and snap.py imported runs nothing."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_importing_snap_py_runs_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "import snap"], cwd=ROOT, capture_output=True, text=True
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
