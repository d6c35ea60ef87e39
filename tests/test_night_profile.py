"""The night profile: NIGHT_LUX and NIGHT_CONTROLS checked before the camera and against it,
set on the running camera for a scene darker than NIGHT_LUX, a second settle, the profile
stored with the shot, MIN_LUX checked first, and the run's time bounds; the recipe in
docs/configuration.md runs as written."""

from __future__ import annotations

import json
import re

import pytest
from helpers import ROOT, camera_events

NIGHT = {
    "NIGHT_LUX": "10",
    "NIGHT_CONTROLS": "AeExposureMode=Long,FrameDurationLimits=100000,1000000",
}
DARK = {"FAKE_CAMERA_LUX": "3"}


def night_recipe() -> dict[str, str]:
    """The variables of the night profile's recipe on the configuration page."""
    page = (ROOT / "docs/configuration.md").read_text()
    found = re.search(r"^## Night profile\n.*?```sh\n(.*?)```", page, re.M | re.S)
    lines = found.group(1).splitlines() if found else []
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


NIGHT_RECIPE = night_recipe()


def stored_fields(redis_db) -> dict[bytes, bytes]:
    [key] = redis_db.keys("image:*")
    return redis_db.hgetall(key)


def events_after_set_controls(camera_dir) -> list[str]:
    events = camera_events(camera_dir)
    return events[events.index("set_controls") + 1 :]


# Checked before the camera


def test_night_controls_syntax_error_exits_78_before_the_camera(run_snap, redis_db, camera_dir):
    result = run_snap(NIGHT_LUX="10", NIGHT_CONTROLS="AeExposureMode=")

    assert result.returncode == 78
    assert "NIGHT_CONTROLS=" in result.stderr and "AeExposureMode has no value" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "open 0" not in camera_events(camera_dir)


def test_night_lux_without_night_controls_exits_78(run_snap, redis_db):
    result = run_snap(NIGHT_LUX="10")

    assert result.returncode == 78
    assert "NIGHT_LUX=10 needs NIGHT_CONTROLS" in result.stderr


def test_night_controls_without_night_lux_exits_78(run_snap, redis_db):
    result = run_snap(NIGHT_CONTROLS="AeExposureMode=Long")

    assert result.returncode == 78
    assert "NIGHT_CONTROLS is set but NIGHT_LUX is not" in result.stderr


def test_min_lux_not_below_night_lux_exits_78(run_snap, redis_db):
    result = run_snap(MIN_LUX="10", **NIGHT)

    assert result.returncode == 78
    assert "MIN_LUX=10 is not below NIGHT_LUX=10" in result.stderr


def test_night_controls_with_a_fixed_focus_and_autofocus_exit_78(run_snap, redis_db):
    result = run_snap(CAMERA_AUTOFOCUS="true", NIGHT_LUX="10", NIGHT_CONTROLS="LensPosition=0")

    assert result.returncode == 78
    assert "cannot go with LensPosition=0 in NIGHT_CONTROLS" in result.stderr


def test_night_exposure_too_long_for_run_timeout_exits_78_before_the_camera(
    run_snap, redis_db, camera_dir
):
    # 3 s settling, 10 s settling again, then a capture of two 30 s frames: 73 s.
    result = run_snap(NIGHT_LUX="10", NIGHT_CONTROLS="ExposureTime=30000000")

    assert result.returncode == 78
    assert len(result.stderr.splitlines()) == 1
    assert "RUN_TIMEOUT=60 is too short" in result.stderr
    assert "2 frames of up to 30 s (NIGHT_CONTROLS) take 73 s" in result.stderr
    assert "open 0" not in camera_events(camera_dir)


def test_night_exposure_that_fits_a_longer_run_timeout_is_accepted(run_snap, redis_db):
    result = run_snap(
        "--check", RUN_TIMEOUT="80", NIGHT_LUX="10", NIGHT_CONTROLS="ExposureTime=30000000"
    )

    assert result.returncode == 0, result.stdout


def test_camera_controls_frames_too_long_for_run_timeout_exit_78(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="FrameDurationLimits=100000,30000000")

    assert result.returncode == 78
    assert "2 frames of up to 30 s (CAMERA_CONTROLS) take 63 s" in result.stderr


# Checked against the opened camera


def test_unknown_night_control_exits_78_naming_night_controls(run_snap, redis_db, camera_dir):
    result = run_snap(NIGHT_LUX="10", NIGHT_CONTROLS="Shutter=1000")

    assert result.returncode == 78
    assert "NIGHT_CONTROLS: this camera has no Shutter control; it has" in result.stderr
    assert "start" not in camera_events(camera_dir)


def test_night_control_out_of_range_exits_78_before_the_camera_starts(
    run_snap, redis_db, camera_dir
):
    result = run_snap(NIGHT_LUX="10", NIGHT_CONTROLS="FrameDurationLimits=100,1000000")

    assert result.returncode == 78
    assert "NIGHT_CONTROLS: FrameDurationLimits=100,1000000 is outside" in result.stderr
    assert "start" not in camera_events(camera_dir)
    assert redis_db.keys("image:*") == []


def test_check_reports_the_night_controls(run_snap, redis_db, camera_dir):
    result = run_snap("--check", **NIGHT)

    assert result.returncode == 0, result.stdout
    expected = "night controls: ok (AeExposureMode=Long,FrameDurationLimits=100000,1000000)"
    assert expected in result.stdout
    assert "start" not in camera_events(camera_dir)


def test_check_reports_a_night_control_out_of_range_and_exits_78(run_snap, redis_db):
    result = run_snap("--check", NIGHT_LUX="10", NIGHT_CONTROLS="ExposureValue=9")

    assert result.returncode == 78
    assert "controls: FAILED: NIGHT_CONTROLS: ExposureValue=9.0 is outside" in result.stdout


# Taken with the profile the light calls for


def test_scene_darker_than_night_lux_is_captured_with_the_night_controls(run_snap, redis_db):
    # The night FrameDurationLimits' minimum makes each frame 100 ms long (33 ms by day).
    result = run_snap(CAMERA_METADATA="FrameDuration", **NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    assert stored_fields(redis_db)[b"frame_duration"] == b"100000"


def test_night_controls_are_set_on_the_running_camera(run_snap, redis_db, camera_dir):
    result = run_snap(**NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    events = camera_events(camera_dir)
    assert events.index("start") < events.index("set_controls") < events.index("capture_file")


def test_night_settles_again_after_the_frames_the_controls_take_to_arrive(
    run_snap, redis_db, camera_dir
):
    # 4 frames go by before the controls reach one; auto exposure then converges anew on the
    # 4th frame taken with them (the fake's SETTLED_FRAME).
    result = run_snap(**NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    assert events_after_set_controls(camera_dir).count("capture_metadata") >= 4 + 4


def test_night_shot_records_its_profile_and_the_controls_in_force(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight,AeExposureMode=Normal", **NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    fields = stored_fields(redis_db)
    assert fields[b"profile"] == b"night"
    assert fields[b"controls"] == (
        b"AwbMode=Daylight,AeExposureMode=Long,FrameDurationLimits=100000,1000000"
    )
    assert {b"image_data", b"timestamp", b"mime_type", b"lux"} <= set(fields)
    assert fields[b"lux"] in (b"3", b"4")


def test_scene_at_night_lux_or_brighter_is_a_day_shot(run_snap, redis_db, camera_dir):
    result = run_snap(FAKE_CAMERA_LUX="10", **NIGHT)

    assert result.returncode == 0, result.stderr
    assert stored_fields(redis_db)[b"profile"] == b"day"
    assert "set_controls" not in camera_events(camera_dir)


def test_shot_without_night_lux_has_no_profile_field(run_snap, redis_db):
    result = run_snap(**DARK)

    assert result.returncode == 0, result.stderr
    assert b"profile" not in stored_fields(redis_db)


def test_json_result_names_the_profile_the_shot_was_taken_with(run_snap, redis_db):
    result = run_snap("--json", **NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["profile"] == "night"


def test_json_result_of_a_shot_without_night_lux_has_no_profile(run_snap, redis_db):
    result = run_snap("--json", **DARK)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["profile"] is None


def test_camera_without_lux_takes_a_day_shot(run_snap, redis_db, camera_dir):
    result = run_snap(FAKE_CAMERA_FAULTS="no-lux", **NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    assert stored_fields(redis_db)[b"profile"] == b"day"
    assert "set_controls" not in camera_events(camera_dir)


def test_min_lux_skips_a_scene_darker_still_before_the_night_controls(
    run_snap, redis_db, camera_dir
):
    result = run_snap(MIN_LUX="2", FAKE_CAMERA_LUX="0", **NIGHT)

    assert result.returncode == 0, result.stderr
    assert "skipped: too dark" in result.stdout
    assert redis_db.keys("image:*") == []
    assert "set_controls" not in camera_events(camera_dir)


def test_night_lux_without_settling_reads_a_frame_for_its_lux(run_snap, redis_db):
    result = run_snap(SETTLE_TIMEOUT="0", **NIGHT, **DARK)

    assert result.returncode == 0, result.stderr
    assert stored_fields(redis_db)[b"profile"] == b"night"


def test_night_exposure_that_never_settles_is_captured_after_its_own_timeout(run_snap, redis_db):
    result = run_snap(
        SETTLE_TIMEOUT="0.5",
        NIGHT_SETTLE_TIMEOUT="1",
        FAKE_CAMERA_FAULTS="never-settle",
        **NIGHT,
        **DARK,
    )

    assert result.returncode == 0, result.stderr
    assert "exposure did not settle with NIGHT_CONTROLS within 1 s" in result.stderr
    assert stored_fields(redis_db)[b"profile"] == b"night"


def test_capture_waits_for_a_night_frame_longer_than_capture_timeout(run_snap, redis_db):
    # Night frames of 3 s: the settling gives up after 1 s, 2 s before the next frame comes;
    # CAPTURE_TIMEOUT alone would end the capture before it.
    result = run_snap(
        CAPTURE_TIMEOUT="1",
        NIGHT_SETTLE_TIMEOUT="1",
        NIGHT_LUX="10",
        NIGHT_CONTROLS="FrameDurationLimits=3000000,3000000",
        **DARK,
    )

    assert result.returncode == 0, result.stderr
    assert stored_fields(redis_db)[b"profile"] == b"night"


# The recipe in docs/configuration.md


def test_night_recipe_is_on_the_configuration_page():
    assert set(NIGHT_RECIPE) == {"NIGHT_LUX", "NIGHT_CONTROLS"}


@pytest.mark.usefixtures("every_picamera2")
def test_night_recipe_runs_as_written(run_snap, redis_db):
    result = run_snap(**NIGHT_RECIPE, **DARK)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert stored_fields(redis_db)[b"profile"] == b"night"


def test_night_recipe_passes_check(run_snap, redis_db):
    result = run_snap("--check", **NIGHT_RECIPE)

    assert result.returncode == 0, result.stdout
    assert "night controls: ok" in result.stdout
