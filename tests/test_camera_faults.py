"""A camera that is absent, busy, hung or out of memory: exit 69 with one line saying what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import FAKE_CAMERA, camera_events, wait_for_event

pytestmark = pytest.mark.usefixtures("every_picamera2")


@pytest.mark.parametrize("fault", ["absent", "absent-old"])
def test_absent_camera_exits_69_saying_what_to_check(run_snap, redis_db, fault):
    result = run_snap(FAKE_CAMERA_FAULTS=fault)

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    assert "no camera detected" in result.stderr
    assert "rpicam-hello --list-cameras" in result.stderr
    assert redis_db.keys("image:*") == []


def test_camera_num_beyond_the_cameras_found_exits_69(run_snap, redis_db):
    result = run_snap(CAMERA_NUM="1")

    assert result.returncode == 69
    assert "camera 1 not available: 1 camera(s) found" in result.stderr


def test_busy_camera_exits_69_naming_another_program(run_snap, snap_env, redis_db):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, picamera2; c = picamera2.Picamera2(0); print('held', flush=True);"
            " sys.stdin.read()",
        ],
        env={**snap_env, "PYTHONPATH": str(FAKE_CAMERA)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"

        result = run_snap()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)

    assert result.returncode == 69
    assert "busy" in result.stderr and "another program" in result.stderr
    assert redis_db.keys("image:*") == []


def test_camera_hung_in_capture_exits_69_within_the_capture_timeout(
    run_snap, redis_db, camera_dir, every_picamera2
):
    result = run_snap(CAPTURE_TIMEOUT="1", RUN_TIMEOUT="60", FAKE_CAMERA_FAULTS="hang-capture")

    assert result.returncode == 69
    assert result.stderr.endswith(
        "camera hung: no picture within 1 s; "
        "check the ribbon cable and run: rpicam-hello --list-cameras\n"
    )
    assert result.seconds < 8
    if every_picamera2 >= (0, 3, 20):  # the hung job is dropped where picamera2 can
        assert camera_events(camera_dir)[-2:] == ["cancel_all_and_flush", "close"]
    else:
        assert camera_events(camera_dir)[-1] == "close"


def test_older_picamera2_without_yuv420_jpegs_still_stores_the_shot(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_FAULTS="before-0.3.27")

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("image:*")


def test_camera_out_of_memory_exits_69_suggesting_a_smaller_size(run_snap, camera_dir):
    result = run_snap(FAKE_CAMERA_FAULTS="dma-fail")

    assert result.returncode == 69
    assert "IMAGE_WIDTH" in result.stderr
    assert camera_events(camera_dir)[-1] == "close"


def test_camera_is_closed_when_redis_fails(run_snap, camera_dir):
    result = run_snap(REDIS_URL="redis://127.0.0.1:1")

    assert result.returncode == 75
    assert camera_events(camera_dir)[-1] == "close"


def test_camera_logs_are_quiet_unless_verbose(run_snap, camera_dir):
    quiet = run_snap("--dry-run")
    quiet_events = camera_events(camera_dir)
    (camera_dir / "events.log").unlink()
    verbose = run_snap("--dry-run", "--verbose")

    assert quiet.returncode == 0 and verbose.returncode == 0
    assert "libcamera log levels *:ERROR" in quiet_events
    assert "libcamera log levels *:ERROR" not in camera_events(camera_dir)


def test_camera_held_by_another_program_exits_69_after_retrying(run_snap, snap_env, camera_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import picamera2, sys; c = picamera2.Picamera2(0); sys.stdin.read()",
        ],
        env=snap_env,
        stdin=subprocess.PIPE,
    )
    try:
        wait_for_event(camera_dir, "open 0")
        result = run_snap()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)

    assert result.returncode == 69
    assert "another program holds it" in result.stderr
    assert 2.5 < result.seconds < 10


def test_usb_camera_with_only_yuyv_exits_69_naming_the_format(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_MODEL="uvc-yuyv")

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    assert "YUYV" in result.stderr and "cannot encode" in result.stderr
    assert redis_db.keys("image:*") == []


def test_flips_on_a_camera_that_ignores_them_warn_once_and_capture(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_MODEL="uvc", CAMERA_HFLIP="true")

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignores CAMERA_HFLIP and CAMERA_VFLIP") == 1
    assert redis_db.keys("image:*")


def test_hints_name_libcamera_hello_on_a_pi_that_has_only_that(run_snap, redis_db, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "libcamera-hello").write_text("#!/bin/sh\n")
    (tools / "libcamera-hello").chmod(0o755)

    result = run_snap(FAKE_CAMERA_FAULTS="absent", PATH=f"{tools}:/usr/bin:/bin")

    assert result.returncode == 69
    assert "'libcamera-hello --list-cameras'" in result.stderr
