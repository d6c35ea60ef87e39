"""tests/benchmark.py still runs: one quick pass, its targets not enforced."""

import subprocess
import sys

from helpers import ROOT


def test_benchmark_runs_and_prints_its_table():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "benchmark.py"), "--runs", "1", "--sizes", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "| case | snap.py | floor | ratio | target |" in result.stdout
    for row in (
        "| shot 1.0 MB: wall |",
        "| shot 1.0 MB: CPU |",
        "| shot 1.0 MB: peak RSS |",
        "| Redis unreachable, shot spooled: wall",
        "| no camera: wall",
        "| --help: wall",
        "| --check",
    ):
        assert row in result.stdout, row
    assert "| JPEG copies from the camera's buffer to the socket" in result.stdout
    assert "| moment (ms from exec) | snap.py | floor |" in result.stdout
    for moment in ("camera open", "camera closed", "stored", "process gone"):
        assert f"| {moment} | " in result.stdout, moment
