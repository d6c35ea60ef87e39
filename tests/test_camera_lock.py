"""One camera, one run: a second run waits for the first, a bounded wait, and nothing
written through a file planted where the lock goes."""

from __future__ import annotations

import os
import time

import pytest
from helpers import camera_events, wait_for_event


def test_second_run_on_the_same_camera_waits_for_the_first(snap_process, redis_db, camera_dir):
    slow = {"SETTLE_TIMEOUT": "1.5", "FAKE_CAMERA_FAULTS": "never-settle"}
    first = snap_process(**slow)
    wait_for_event(camera_dir, "start")
    second = snap_process(**slow)

    first.wait(timeout=30)
    second.wait(timeout=30)

    assert (first.returncode, second.returncode) == (0, 0)
    assert len(redis_db.keys("image:*")) == 2


def test_camera_still_locked_at_lock_timeout_exits_75_naming_the_holder(
    snap_process, camera_dir, redis_db
):
    first = snap_process(SETTLE_TIMEOUT="6", FAKE_CAMERA_FAULTS="never-settle")
    wait_for_event(camera_dir, "start")
    started = time.monotonic()
    second = snap_process(LOCK_TIMEOUT="1")

    second.wait(timeout=30)
    seconds = time.monotonic() - started
    first.wait(timeout=30)

    assert second.returncode == 75
    assert f"still in use by another snap run (pid {first.pid})" in second.stderr.read()
    assert seconds < 4
    assert first.returncode == 0


LOCK_PATH_REASONS = {
    "fifo": "cannot use lock file {}: not a regular file; remove it",
    "directory": "cannot open lock file {}: Is a directory",
    "symlink": "cannot open lock file {}: a symbolic link",
    "hard link": "cannot use lock file {}: a hard link; remove it",
}


@pytest.mark.parametrize("kind", LOCK_PATH_REASONS)
def test_lock_path_that_is_no_lock_file_exits_73_writing_nothing(
    run_snap, redis_db, camera_dir, tmp_path, kind
):
    lock = camera_dir / "snap-camera0.lock"
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "directory":
        lock.mkdir()
    elif kind == "symlink":
        lock.symlink_to(victim)
    else:
        os.link(victim, lock)

    result = run_snap(timeout=20)

    assert result.returncode == 73
    assert result.stderr == f"snap: error: {LOCK_PATH_REASONS[kind].format(lock)}\n"
    assert victim.read_text() == "keep me\n"
    assert camera_events(camera_dir) == []
    assert redis_db.keys("image:*") == []


def test_camera_lock_file_is_created_writable_by_every_user(run_snap, redis_db, camera_dir):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert (camera_dir / "snap-camera0.lock").stat().st_mode & 0o777 == 0o666
