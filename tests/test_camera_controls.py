"""CAMERA_CONTROLS: checked before the camera and against it, in the configuration from the
first frame, stored with the shot; the controls that fix focus or exposure change what snap
does; the recipes in docs/configuration.md run as written."""

from __future__ import annotations

import json
import re

import pytest
from helpers import ROOT, camera_events

RECIPES = [
    line.partition("=")[2]
    for line in re.search(
        r"^## Camera controls\n(.*?)(?=^## )",
        (ROOT / "docs/configuration.md").read_text(),
        re.M | re.S,
    )
    .group(1)
    .splitlines()
    if line.startswith("CAMERA_CONTROLS=")
]


def started_with(camera_dir) -> dict:
    return json.loads((camera_dir / "started-with.json").read_text())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line]


# Checked before the camera


def test_controls_syntax_error_exits_78_naming_the_setting_before_the_camera(
    run_snap, redis_db, camera_dir
):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight,LensPosition=")

    assert result.returncode == 78
    assert "CAMERA_CONTROLS=" in result.stderr and "LensPosition has no value" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "open 0" not in camera_events(camera_dir)


def test_controls_value_that_is_no_number_or_name_exits_78(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="ExposureValue=0.5x")

    assert result.returncode == 78
    assert "ExposureValue='0.5x'" in result.stderr


def test_control_set_twice_exits_78(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight,AwbMode=Cloudy")

    assert result.returncode == 78
    assert "AwbMode is set twice" in result.stderr


# Checked against the opened camera


def test_unknown_control_exits_78_listing_the_cameras_controls(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight,Shutter=1000")

    assert result.returncode == 78
    assert len(error_lines(result.stderr)) == 1
    assert "this camera has no Shutter control; it has AeConstraintMode," in result.stderr
    assert "LensPosition" in result.stderr
    assert "start" not in camera_events(camera_dir)
    assert redis_db.keys("image:*") == []


def test_control_without_autofocus_is_unknown_to_a_camera_without_a_lens(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="LensPosition=2.0", FAKE_CAMERA_MODEL="imx219")

    assert result.returncode == 78
    assert "no LensPosition control" in result.stderr


def test_control_out_of_range_exits_78_naming_the_range(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_CONTROLS="LensPosition=20")

    assert result.returncode == 78
    assert "LensPosition=20.0 is outside this camera's range, 0 to 15" in result.stderr
    assert "start" not in camera_events(camera_dir)
    assert redis_db.keys("image:*") == []


def test_exposure_range_is_the_configured_sensor_modes(run_snap, redis_db):
    # Before configure() the camera gives 1 to 66666 us; its 1536x864 mode allows 77 s.
    result = run_snap(CAMERA_CONTROLS="ExposureTime=200000")

    assert result.returncode == 0, result.stderr


def test_exposure_beyond_the_sensor_modes_longest_exits_78(run_snap, redis_db):
    # RUN_TIMEOUT long enough for two 100 s frames, so that the camera is asked.
    result = run_snap(CAMERA_CONTROLS="ExposureTime=100000000", RUN_TIMEOUT="300")

    assert result.returncode == 78
    assert "outside this camera's range, 9 to 77208145" in result.stderr


def test_unknown_enum_value_exits_78_listing_the_enums_names(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylite")

    assert result.returncode == 78
    assert "AwbMode=Daylite is not one of Auto, Incandescent, Tungsten" in result.stderr


def test_whole_number_control_refuses_a_fraction(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="ExposureTime=1000.5")

    assert result.returncode == 78
    assert "ExposureTime=1000.5: expected whole numbers" in result.stderr


def test_pair_control_needs_two_numbers(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="ColourGains=1.8")

    assert result.returncode == 78
    assert "ColourGains=1.8: expected 2 numbers" in result.stderr


def test_check_opens_the_camera_to_check_the_controls(run_snap, redis_db, camera_dir):
    result = run_snap("--check", CAMERA_CONTROLS="AwbMode=Daylight,LensPosition=2")

    assert result.returncode == 0, result.stdout
    assert "controls: ok (AwbMode=Daylight,LensPosition=2.0)" in result.stdout
    assert "start" not in camera_events(camera_dir)


def test_check_reports_a_control_out_of_range_and_exits_78(run_snap, redis_db):
    result = run_snap("--check", CAMERA_CONTROLS="LensPosition=20")

    assert result.returncode == 78
    assert "controls: FAILED: CAMERA_CONTROLS: LensPosition=20.0 is outside" in result.stdout


# Applied from the first frame, stored with the shot


@pytest.mark.usefixtures("every_picamera2")
def test_controls_are_in_the_configuration_the_camera_starts_with(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight,ExposureValue=0.5")

    assert result.returncode == 0, result.stderr
    assert started_with(camera_dir)["AwbMode"] == 5
    assert started_with(camera_dir)["ExposureValue"] == 0.5
    assert "set_controls" not in camera_events(camera_dir)


@pytest.mark.usefixtures("every_picamera2")
def test_controls_reach_the_captured_frame(run_snap, redis_db):
    controls = "ExposureTime=30000,AnalogueGain=2.5,ColourGains=1.8,1.6,LensPosition=3"
    result = run_snap("--json", CAMERA_CONTROLS=controls)

    assert result.returncode == 0, result.stderr
    metadata = json.loads(result.stdout)["metadata"]
    assert (metadata["ExposureTime"], metadata["AnalogueGain"]) == (30000, 2.5)
    assert metadata["ColourGains"] == [1.8, 1.6]
    assert metadata["LensPosition"] == 3.0


def test_shot_stores_the_controls_in_force(run_snap, redis_db):
    result = run_snap(CAMERA_CONTROLS="AwbMode=Daylight, LensPosition=2,AeEnable=false")

    assert result.returncode == 0, result.stderr
    [key] = redis_db.keys("image:*")
    fields = redis_db.hgetall(key)
    assert fields[b"controls"] == b"AwbMode=Daylight,LensPosition=2.0,AeEnable=false"
    assert {b"image_data", b"timestamp", b"mime_type", b"lux"} <= set(fields)


def test_shot_without_controls_has_no_controls_field(run_snap, redis_db):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    [key] = redis_db.keys("image:*")
    assert b"controls" not in redis_db.hgetall(key)


# Controls that decide what snap does


def test_autofocus_with_a_fixed_focus_exits_78_before_the_camera(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true", CAMERA_CONTROLS="LensPosition=2.0")

    assert result.returncode == 78
    assert "CAMERA_AUTOFOCUS=true cannot go with LensPosition=2.0" in result.stderr
    assert "open 0" not in camera_events(camera_dir)


def test_autofocus_with_continuous_focus_exits_78(run_snap, redis_db):
    result = run_snap(CAMERA_AUTOFOCUS="true", CAMERA_CONTROLS="AfMode=Continuous")

    assert result.returncode == 78
    assert "cannot go with AfMode=Continuous" in result.stderr


def test_autofocus_with_af_mode_auto_runs_its_cycle(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_AUTOFOCUS="true", CAMERA_CONTROLS="AfMode=Auto,AfSpeed=Fast")

    assert result.returncode == 0, result.stderr
    assert camera_events(camera_dir).count("autofocus_cycle") == 1


def test_fixed_focus_takes_the_shot_at_its_lens_position_without_a_cycle(
    run_snap, redis_db, camera_dir
):
    result = run_snap("--json", CAMERA_CONTROLS="AfMode=Manual,LensPosition=4.5")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metadata"]["LensPosition"] == 4.5
    assert "autofocus_cycle" not in camera_events(camera_dir)


@pytest.mark.usefixtures("every_picamera2")
def test_fixed_exposure_waits_for_no_settling(run_snap, redis_db, camera_dir):
    result = run_snap(
        CAMERA_CONTROLS="ExposureTime=20000,AnalogueGain=2.0",
        SETTLE_TIMEOUT="5",
        FAKE_CAMERA_FAULTS="never-settle",
    )

    assert result.returncode == 0, result.stderr
    assert "settle" not in result.stderr
    assert "capture_metadata" not in camera_events(camera_dir)
    assert result.seconds < 5


def test_auto_exposure_off_waits_for_no_settling(run_snap, redis_db, camera_dir):
    result = run_snap(
        CAMERA_CONTROLS="AeEnable=false", SETTLE_TIMEOUT="5", FAKE_CAMERA_FAULTS="never-settle"
    )

    assert result.returncode == 0, result.stderr
    assert "capture_metadata" not in camera_events(camera_dir)


def test_exposure_time_alone_still_waits_for_the_gain_to_settle(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_CONTROLS="ExposureTime=20000")

    assert result.returncode == 0, result.stderr
    assert "capture_metadata" in camera_events(camera_dir)


def test_fixed_exposure_still_skips_a_scene_darker_than_min_lux(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_CONTROLS="AeEnable=false", MIN_LUX="10", FAKE_CAMERA_LUX="3")

    assert result.returncode == 0, result.stderr
    assert "skipped: too dark" in result.stdout
    assert redis_db.keys("image:*") == []


# The recipes in docs/configuration.md


def test_configuration_page_has_four_recipes():
    assert len(RECIPES) == 4


@pytest.mark.parametrize("controls", RECIPES)
def test_recipe_runs_as_written(run_snap, redis_db, controls):
    result = run_snap(CAMERA_CONTROLS=controls)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [key] = redis_db.keys("image:*")
    assert redis_db.hget(key, "controls").decode().startswith(controls.split(",")[0])


@pytest.mark.parametrize("controls", RECIPES)
def test_recipe_passes_check(run_snap, redis_db, controls):
    result = run_snap("--check", CAMERA_CONTROLS=controls)

    assert result.returncode == 0, result.stdout
    assert "controls: ok" in result.stdout
