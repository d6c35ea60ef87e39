"""MIN_LUX: a scene darker than it is skipped, storing nothing, and recorded as such."""

from __future__ import annotations

import json
import re
import time

from helpers import camera_events, status_of

DARK = {"MIN_LUX": "10", "FAKE_CAMERA_LUX": "3"}


def test_dark_scene_is_skipped_storing_nothing(shoot, redis_db, camera_dir):
    result = shoot(**DARK)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "skipped: too dark (lux 3 < MIN_LUX 10)\n"
    assert result.stderr == ""
    assert redis_db.keys("image:*") == []
    assert "capture_file" not in camera_events(camera_dir)  # no JPEG encoded
    assert camera_events(camera_dir)[-1] == "close"


def test_dark_skip_is_recorded_in_the_status(shoot, redis_db):
    before = int(time.time())

    shoot(**DARK)

    fields = status_of(redis_db)
    assert before <= int(fields["skipped_dark"]) == int(fields["last_run"]) <= time.time()
    assert (fields["last_exit"], fields["failures"], fields["last_stored"]) == ("0", "0", "0")


def test_dark_skip_whose_report_cannot_be_written_still_succeeds(shoot, redis_db):
    with open("/dev/full", "w") as full:  # unbuffered, as on a terminal: written at once
        result = shoot(stdout=full, PYTHONUNBUFFERED="1", **DARK)

    assert result.returncode == 0, result.stderr
    fields = status_of(redis_db)
    assert (fields["last_exit"], fields["failures"]) == ("0", "0")


def test_dark_skip_json_says_why(shoot, redis_db):
    result = shoot("--json", **DARK)

    report = json.loads(result.stdout)
    assert (report["key"], report["skipped"], report["lux"]) == (
        None,
        "too dark (lux 3 < MIN_LUX 10)",
        3,
    )


def test_camera_skipping_the_dark_counts_as_fresh_for_status(shoot, redis_db):
    shoot(**DARK)

    result = shoot("--status")

    assert result.returncode == 0
    skipped = re.match(r"garden: dark, no shot stored yet, too dark (\d+) s ago", result.stdout)
    assert skipped and int(skipped[1]) < 30


def test_scene_at_min_lux_is_stored(shoot, redis_db):
    result = shoot("--json", MIN_LUX="400")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert int(redis_db.hget(report["key"], "lux")) >= 400


def test_camera_without_lux_is_never_skipped(shoot, redis_db):
    result = shoot("--json", MIN_LUX="10", FAKE_CAMERA_FAULTS="no-lux")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["lux"] == -1
    assert redis_db.hget(report["key"], "lux") == b"-1"


def test_min_lux_without_settling_reads_one_frame_for_its_lux(shoot, redis_db, camera_dir):
    result = shoot(SETTLE_TIMEOUT="0", **DARK)

    assert result.stdout.startswith("skipped: too dark")
    assert camera_events(camera_dir).count("capture_metadata") == 1


def test_min_lux_unset_reads_no_extra_frame(shoot, redis_db, camera_dir):
    shoot(SETTLE_TIMEOUT="0", FAKE_CAMERA_LUX="3")

    assert "capture_metadata" not in camera_events(camera_dir)
    assert len(redis_db.keys("image:*")) == 1


def test_scene_whose_frames_outlast_the_settling_is_still_skipped_as_dark(shoot, redis_db):
    result = shoot(
        SETTLE_TIMEOUT="1",
        FAKE_CAMERA_FPS="0.5",  # the first frame comes after the settling gave up
        CAMERA_CONTROLS="FrameDurationLimits=100000,2000000",
        **DARK,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped: too dark (lux 3 < MIN_LUX 10)")
    assert redis_db.keys("image:*") == []
