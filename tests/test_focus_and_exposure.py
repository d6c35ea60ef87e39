"""Autofocus and exposure settling: each bounded, each warning where the camera falls short."""

from __future__ import annotations

import pytest
from helpers import camera_events

pytestmark = pytest.mark.usefixtures("every_picamera2")


def test_autofocus_runs_one_cycle_when_enabled(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true")

    assert result.returncode == 0, result.stderr
    assert camera_events(camera_dir).count("autofocus_cycle") == 1
    assert result.stderr == ""


def test_autofocus_is_skipped_when_disabled(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="false")

    assert result.returncode == 0, result.stderr
    assert "autofocus_cycle" not in camera_events(camera_dir)


def test_camera_without_autofocus_warns_and_captures(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true", FAKE_CAMERA_MODEL="imx219")

    assert result.returncode == 0, result.stderr
    assert "no autofocus" in result.stderr
    assert "autofocus_cycle" not in camera_events(camera_dir)
    assert redis_db.keys("image:*")


def test_failed_autofocus_warns_and_captures(run_snap, redis_db):
    result = run_snap(CAMERA_AUTOFOCUS="true", FAKE_CAMERA_FAULTS="af-fail")

    assert result.returncode == 0, result.stderr
    assert "autofocus failed" in result.stderr
    assert redis_db.keys("image:*")


def test_hung_autofocus_is_abandoned_after_its_timeout(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true", AUTOFOCUS_TIMEOUT="1", FAKE_CAMERA_FAULTS="af-hang")

    assert result.returncode == 0, result.stderr
    assert "autofocus did not finish within 1 s" in result.stderr
    assert redis_db.keys("image:*")
    assert result.seconds < 10


def test_autofocus_past_its_timeout_is_cancelled_before_the_capture(run_snap, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true", AUTOFOCUS_TIMEOUT="1", FAKE_CAMERA_FAULTS="af-hang")

    assert result.returncode == 0, result.stderr
    events = camera_events(camera_dir)
    assert events.index("autofocus cancelled") < events.index("capture_file")
    assert "capture_file while the lens is moving" not in events


def test_exposure_settled_but_never_reported_is_captured_once_steady(
    run_snap, redis_db, camera_dir
):
    result = run_snap(SETTLE_TIMEOUT="20", FAKE_CAMERA_FAULTS="ae-unreported")

    assert result.returncode == 0, result.stderr
    assert "settle" not in result.stderr
    assert result.seconds < 10
    # The fake's exposure stops changing on its SETTLED_FRAME; then STABLE_FRAMES more.
    assert camera_events(camera_dir).count("capture_metadata") >= 5


def test_exposure_still_moving_is_never_taken_as_settled(run_snap, redis_db):
    result = run_snap(SETTLE_TIMEOUT="2", FAKE_CAMERA_FAULTS="ae-unreported,never-settle")

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("exposure did not settle within 2 s") == 1


def test_settled_exposure_gives_no_warning(run_snap, redis_db, camera_dir):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert "settle" not in result.stderr
    assert camera_events(camera_dir).count("capture_metadata") >= 2


def test_old_libcamera_ae_locked_counts_as_settled(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_FAULTS="ae-locked")

    assert result.returncode == 0, result.stderr
    assert "settle" not in result.stderr


def test_exposure_that_never_settles_warns_and_captures(run_snap, redis_db):
    result = run_snap(SETTLE_TIMEOUT="1", FAKE_CAMERA_FAULTS="never-settle")

    assert result.returncode == 0, result.stderr
    assert "exposure did not settle within 1 s" in result.stderr
    assert redis_db.keys("image:*")
    assert 1 <= result.seconds < 10


def test_settle_timeout_zero_captures_the_first_frame(run_snap, redis_db, camera_dir):
    result = run_snap(SETTLE_TIMEOUT="0", FAKE_CAMERA_FAULTS="never-settle")

    assert result.returncode == 0, result.stderr
    assert "capture_metadata" not in camera_events(camera_dir)
    assert "settle" not in result.stderr
