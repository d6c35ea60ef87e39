"""Lock files in-process: created writable by every user, a bounded wait, one holder at a time."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import make_app, shot

from snapcam import keeping
from snapcam import spool as spool_module
from snapcam.spool import Spool


def test_spool_lock_file_is_created_writable_by_every_user(spool):
    with spool.locked():
        pass

    assert stat.S_IMODE((spool.directory / ".lock").stat().st_mode) == 0o666


KEEP_AS_NOBODY = """
import logging, sys
from pathlib import Path
from snapcam import keeping
from snapcam.spool import Spool, Spooled
logging.basicConfig(format="%(message)s")
spool = Spool(Path(sys.argv[1]), 1_000)
fields = {"image_data": b"\\xff\\xd8" * 1000, "timestamp": 1700000001, "mime_type": "x"}
keeping.keep(spool, Spooled(fields, "image", 1700003601))
"""


@pytest.fixture
def shared_spool():
    """A spool every user may write to, as a root test shot and the service user share it."""
    parent = Path(tempfile.mkdtemp())
    parent.chmod(0o755)
    spool = Spool(parent / "spool", max_bytes=1_000)
    spool.prepare()
    spool.directory.chmod(0o777)
    make_app(parent / "app", copy=True)  # snap's code, readable by that other user
    yield spool
    shutil.rmtree(parent)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("mode", [0o666, 0o644])
def test_lock_file_another_user_made_still_serves_this_run(shared_spool, mode):
    keeping.keep(shared_spool, shot(1700000000))
    (shared_spool.directory / ".lock").chmod(mode)
    env = dict(os.environ)
    if env.get("MUTANT_UNDER_TEST") == "stats":  # mutation testing's census: the copy of the
        env["MUTANT_UNDER_TEST"] = ""  # code is outside its directory and cannot report to it

    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
        + ["-c", KEEP_AS_NOBODY, str(shared_spool.directory)],
        cwd=shared_spool.directory.parent / "app",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert "lock" not in result.stderr
    # Trimmed, as only the holder of the lock trims.
    assert [entry.timestamp for entry in shared_spool.entries()] == [1700000001]


def test_waiting_for_the_lock_is_bounded(spool, monkeypatch):
    monkeypatch.setattr(spool_module, "LOCK_WAIT_SECONDS", 0.5)
    keeper = threading.Thread(target=keeping.keep, args=(spool, shot(1700000000)), daemon=True)
    with spool.locked() as first:
        started = time.monotonic()
        keeper.start()
        keeper.join(timeout=5)
        waited = time.monotonic() - started

    assert first and not keeper.is_alive()
    assert 0.5 <= waited < 2
    assert len(spool.entries()) == 1


def test_second_holder_of_the_lock_is_told_it_is_held(spool):
    with spool.locked() as first, spool.locked(wait=False) as second:
        assert (first, second) == (True, False)
