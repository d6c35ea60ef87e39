"""snapcam.launch: snap.py under any python3, and snap.py imported runs nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, make_app, run_command, system_python


def test_importing_snap_py_runs_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "import snap"], cwd=ROOT, capture_output=True, text=True
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# python3 -S has no site-packages, so none of snap's packages, whatever the system holds.


def test_python3_without_snaps_packages_runs_snap_with_the_checkouts_venv(
    checkout, dotenv, redis_db
):
    result = run_command([system_python(), "-S", str(checkout / "snap.py"), "--json"])

    assert result.returncode == 0, result.stderr
    assert len(redis_db.keys("image:*")) == 1


def test_python3_without_snaps_packages_or_a_venv_exits_69_saying_what_to_install(tmp_path):
    snap = make_app(tmp_path / "snap")

    result = run_command([system_python(), "-S", str(snap), "--check"])

    assert result.returncode == 69
    assert result.stderr == (
        f"snap: error: redis and environs not installed for {system_python()}; install them "
        f"as the README does: cd {snap.parent} && python3 -m venv --system-site-packages .venv"
        " && .venv/bin/pip install -r requirements.txt\n"
    )


def test_python3_without_snaps_packages_or_a_venv_exits_69_with_stderr_closed(tmp_path):
    snap = make_app(tmp_path / "snap")

    result = run_command(["sh", "-c", f'exec {system_python()} -S "{snap}" --check 2>&-'])

    assert result.returncode == 69


# A .venv/bin/python that keeps the environment, and one that clears it (env -i).
@pytest.mark.parametrize("env", ["", "env -i "])
def test_a_venv_that_does_not_help_is_run_once_not_again_and_again(tmp_path, env):
    app = make_app(tmp_path / "snap").parent
    python = app / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {env}{system_python()} -S "$@"\n')
    python.chmod(0o755)

    result = run_command([system_python(), "-S", str(app / "snap.py")], timeout=20)

    assert result.returncode == 69
    assert result.stderr.startswith(
        f"snap: error: redis and environs not installed for {app}/.venv;"
    )
