"""snapcam.config in-process: the settings table, validation, where values come from."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
from helpers import ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from snapcam import config
from snapcam.errors import ConfigError

# Captured before the clean_environment fixture points it at the test's own file.
DEFAULT_ENV_FILE = config.default_env_file


def test_every_setting_has_a_config_field_of_its_name():
    fields = [field.name for field in dataclasses.fields(config.Config)]

    assert fields == [name.lower() for name in config.SETTINGS]


def test_unset_variables_take_the_defaults_of_the_table(make_config):
    loaded = make_config()

    for name, setting in config.SETTINGS.items():
        if setting.default is not None:
            assert str(getattr(loaded, name.lower())) == str(setting.default), name


def test_env_example_values_are_the_defaults_of_the_table(make_config):
    text = (ROOT / "env.example").read_text()
    values = dict(re.findall(r"^([A-Z][A-Z_]+)=(.+)$", text, re.M))

    defaults = make_config()  # first: make_config() keeps the variables it was given

    assert make_config(**values) == defaults


def test_empty_value_takes_the_default(make_config):
    assert make_config(JPEG_QUALITY="").jpeg_quality == 90


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("JPEG_QUALITY", "96", "expected a whole number from 1 to 95"),
        ("REDIS_TIMEOUT", "0", "expected a number of seconds greater than 0"),
        ("SETTLE_TIMEOUT", "-1", "expected a number of seconds from 0 to 2147483"),
        ("CAMERA_HFLIP", "maybe", "expected true or false"),
        ("IMAGE_KEY_PREFIX", "image:", "not ending in ':'"),
        ("CAMERA_METADATA", "Lux", "Lux is already stored as lux"),
        ("REDIS_URL", "http://localhost", "expected a redis://, rediss:// or unix:// URL"),
        ("STATUS_PREFIX", "snap camera", "expected letters, digits and _.:-"),
        ("MIN_LUX", "-1", "expected a whole number of lux, 0 or more"),
    ],
)
def test_invalid_value_is_one_config_error_naming_the_variable(make_config, name, value, reason):
    with pytest.raises(ConfigError) as error:
        make_config(**{name: value})

    assert str(error.value).startswith(f"{name}={value!r} is invalid: ")
    assert reason in str(error.value)


@pytest.mark.parametrize(
    ("status_prefix", "image_key_prefix"),
    [
        ("image", "image"),
        ("image:status", "image"),
        ("image:status", "image:garden"),  # front ends list image:*, not only image:garden:*
        ("snap", "snap:camera:garden"),  # --status would list the shots
    ],
)
def test_status_prefix_overlapping_the_shots_is_refused(
    make_config, status_prefix, image_key_prefix
):
    with pytest.raises(ConfigError, match=rf"^STATUS_PREFIX='{status_prefix}' is invalid: "):
        make_config(STATUS_PREFIX=status_prefix, IMAGE_KEY_PREFIX=image_key_prefix)


def test_status_prefix_beside_the_shots_is_taken(make_config):
    loaded = make_config(STATUS_PREFIX="imagery:status", IMAGE_KEY_PREFIX="image:garden")

    assert loaded.status_prefix == "imagery:status"


def test_status_prefix_set_empty_turns_the_status_off(make_config, tmp_path):
    (tmp_path / "checkout.env").write_text("STATUS_PREFIX=\n")

    assert make_config().status_prefix == ""


def test_password_in_an_invalid_url_is_masked(make_config):
    with pytest.raises(ConfigError) as error:
        make_config(REDIS_URL="http://user:hunter2@localhost")

    assert "hunter2" not in str(error.value)


def test_width_without_height_is_refused(make_config):
    with pytest.raises(ConfigError, match="IMAGE_HEIGHT is not set"):
        make_config(IMAGE_WIDTH="640")


def test_metadata_names_become_a_tuple(make_config):
    loaded = make_config(CAMERA_METADATA="ExposureTime, AnalogueGain")

    assert loaded.camera_metadata == ("ExposureTime", "AnalogueGain")


def test_environment_wins_over_the_env_file(make_config, tmp_path):
    (tmp_path / "checkout.env").write_text("JPEG_QUALITY=50\nIMAGE_EXPIRY=60\n")

    loaded = make_config(JPEG_QUALITY="70")

    assert (loaded.jpeg_quality, loaded.image_expiry) == (70, 60)


def test_default_env_file_is_the_one_beside_snap_py():
    assert DEFAULT_ENV_FILE() == ROOT / ".env"


def test_importing_the_configuration_loads_neither_redis_nor_picamera2():
    code = (
        "import sys, snapcam.config; "
        "print(sorted({'redis', 'picamera2', 'environs'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout == "[]\n"


def garbage_after_reading(tmp_path, before: str = "pass") -> str:
    """What gc.collect() finds after load_config() in a process run as snap.py runs, with the
    collector off; `before` runs just before load_config()."""
    (tmp_path / "empty.env").write_text("")
    code = (
        "import gc, pathlib; gc.disable(); from snapcam import config; gc.collect(); "
        f"{before}; config.load_config(pathlib.Path('empty.env')); print(gc.collect())"
    )
    environment = {"PATH": "/usr/bin:/bin", "SPOOL_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reading_the_configuration_leaves_no_cyclic_garbage(tmp_path):
    assert garbage_after_reading(tmp_path) == "0\n"


def test_reading_the_configuration_collects_none_of_what_came_before(tmp_path):
    assert garbage_after_reading(tmp_path, "cycle = []; cycle.append(cycle); del cycle") == "1\n"


TIMEOUTS = [name for name, setting in config.SETTINGS.items() if setting.name.endswith("TIMEOUT")]


def load_with(tmp_path, **variables: str):
    """load_config() with these variables and nothing else, however often a test calls it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
        for name in config.SETTINGS:
            patch.delenv(name, raising=False)
        for name, value in variables.items():
            patch.setenv(name, value)
        return config.load_config(None)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(config.SETTINGS)),
    value=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40),
)
def test_any_text_is_taken_or_refused_with_one_config_error(tmp_path, name, value):
    try:
        load_with(tmp_path, **{name: value})
    except ConfigError as error:
        # The value itself, or, for a width or a height alone, the one missing beside it.
        named = re.match(r"[A-Z_]+", str(error)).group()
        assert named == name or {named, name} == {"IMAGE_WIDTH", "IMAGE_HEIGHT"}, str(error)
        assert "\n" not in str(error)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(config.SETTINGS)),
    value=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=10),
)
def test_a_value_with_undecodable_bytes_is_refused(tmp_path, name, value):
    undecodable = value + "\udce9"  # how os.environ holds the byte 0xe9 of a non-UTF-8 value

    with pytest.raises(ConfigError, match=f"^{name}=.* is invalid: not UTF-8 text$"):
        load_with(tmp_path, **{name: undecodable})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=-(10**20), max_value=10**20))
@example(config.IMAGE_EXPIRY_MAX)
@example(config.IMAGE_EXPIRY_MAX + 1)
def test_image_expiry_is_taken_exactly_from_1_to_the_redis_limit(tmp_path, seconds):
    if 1 <= seconds <= config.IMAGE_EXPIRY_MAX:
        assert load_with(tmp_path, IMAGE_EXPIRY=str(seconds)).image_expiry == seconds
    else:
        with pytest.raises(ConfigError, match=f"^IMAGE_EXPIRY='{seconds}' is invalid"):
            load_with(tmp_path, IMAGE_EXPIRY=str(seconds))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(TIMEOUTS),
    seconds=st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=config.TIMEOUT_MAX - 1, max_value=config.TIMEOUT_MAX + 1),
)
@example(name="RUN_TIMEOUT", seconds=float(config.TIMEOUT_MAX))
@example(name="RUN_TIMEOUT", seconds=config.TIMEOUT_MAX + 0.001)
def test_a_timeout_is_taken_exactly_up_to_the_platform_limit(tmp_path, name, seconds):
    lowest_exclusive = config.SETTINGS[name].above_minimum
    allowed = (0 < seconds if lowest_exclusive else 0 <= seconds) and seconds <= config.TIMEOUT_MAX
    if allowed:
        assert getattr(load_with(tmp_path, **{name: repr(seconds)}), name.lower()) == seconds
    else:
        with pytest.raises(ConfigError, match=f"^{name}="):
            load_with(tmp_path, **{name: repr(seconds)})


def test_status_prefix_under_image_is_refused_whatever_the_shots_prefix(make_config):
    with pytest.raises(ConfigError, match=r"^STATUS_PREFIX='image:status' is invalid: front ends"):
        make_config(STATUS_PREFIX="image:status", IMAGE_KEY_PREFIX="garden")
