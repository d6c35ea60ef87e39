"""Configuration: every variable validated before the camera is touched."""

import pytest
from conftest import camera_events

INVALID = [
    ("IMAGE_EXPIRY", "abc"),
    ("IMAGE_EXPIRY", "0"),
    ("IMAGE_EXPIRY", "-60"),
    ("IMAGE_EXPIRY", "1.5"),
    ("JPEG_QUALITY", "0"),
    ("JPEG_QUALITY", "96"),
    ("JPEG_QUALITY", "high"),
    ("CAMERA_NUM", "-1"),
    ("CAMERA_NUM", "first"),
    ("REDIS_TIMEOUT", "0"),
    ("REDIS_TIMEOUT", "soon"),
    ("SETTLE_TIMEOUT", "-1"),
    ("AUTOFOCUS_TIMEOUT", "0"),
    ("CAPTURE_TIMEOUT", "-3"),
    ("CAMERA_HFLIP", "maybe"),
    ("CAMERA_VFLIP", "2"),
    ("CAMERA_AUTOFOCUS", "sometimes"),
    ("IMAGE_WIDTH", "wide"),
    ("IMAGE_HEIGHT", "10"),
    ("IMAGE_KEY_PREFIX", "my images"),
    ("IMAGE_KEY_PREFIX", "image:"),
    ("CAMERA_METADATA", "Lux"),
    ("CAMERA_METADATA", "exposure time"),
    ("REDIS_URL", "http://localhost:6379"),
    ("REDIS_URL", "localhost:6379"),
]


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_invalid_value_exits_78_with_one_line_naming_it(run_snap, camera_dir, name, value):
    result = run_snap(**{name: value})

    assert result.returncode == 78
    assert result.stderr.count("\n") == 1
    assert name in result.stderr
    assert value in result.stderr
    assert camera_events(camera_dir) == []


def test_redis_url_redis_py_cannot_parse_exits_78(run_snap, camera_dir):
    result = run_snap(REDIS_URL="redis://localhost:port/0")

    assert result.returncode == 78
    assert "REDIS_URL" in result.stderr
    assert result.stderr.count("\n") == 1
    assert camera_events(camera_dir) == []


def test_invalid_redis_url_message_masks_the_password(run_snap):
    result = run_snap(REDIS_URL="http://user:hunter2secret@example:6379")

    assert result.returncode == 78
    assert "hunter2secret" not in result.stderr
    assert "****" in result.stderr


def test_width_without_height_exits_78(run_snap, camera_dir):
    result = run_snap(IMAGE_WIDTH="800", IMAGE_HEIGHT="")

    assert result.returncode == 78
    assert "IMAGE_HEIGHT" in result.stderr
    assert camera_events(camera_dir) == []


def test_empty_value_means_the_default(run_snap, redis_db):
    result = run_snap(IMAGE_EXPIRY="", JPEG_QUALITY="")

    assert result.returncode == 0, result.stderr
    key = redis_db.keys("image:*")[0]
    assert 3590 <= redis_db.ttl(key) <= 3600


def test_env_file_next_to_snap_is_read(run_snap, snap_app, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromfile\n")

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("fromfile:*")


def test_environment_wins_over_env_file(run_snap, snap_app, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromfile\n")

    result = run_snap(IMAGE_KEY_PREFIX="fromenv")

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("fromenv:*")
    assert not redis_db.keys("fromfile:*")


def test_env_file_option_is_read_instead_of_the_default(run_snap, snap_app, tmp_path, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromdefault\n")
    other = tmp_path / "garden.env"
    other.write_text("IMAGE_KEY_PREFIX=garden\n")

    result = run_snap("--env-file", str(other))

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("garden:*")
    assert not redis_db.keys("fromdefault:*")


def test_invalid_value_in_env_file_exits_78(run_snap, snap_app):
    (snap_app.parent / ".env").write_text("JPEG_QUALITY=100\n")

    result = run_snap()

    assert result.returncode == 78
    assert "JPEG_QUALITY='100'" in result.stderr
