"""Every setting validated before the camera is touched: exit 78 with one line naming it."""

from __future__ import annotations

import json
import re

import pytest
from helpers import camera_events

from snapcam.config import IMAGE_EXPIRY_MAX, TIMEOUT_MAX

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


TOO_LARGE = [
    ("IMAGE_EXPIRY", "1000000000000001", IMAGE_EXPIRY_MAX),
    ("IMAGE_EXPIRY", "9223372036854775", IMAGE_EXPIRY_MAX),  # Redis's own limit
    ("REDIS_TIMEOUT", "2147484", TIMEOUT_MAX),
    ("AUTOFOCUS_TIMEOUT", "1e10", TIMEOUT_MAX),
    ("SETTLE_TIMEOUT", "9300000000", TIMEOUT_MAX),
    ("CAPTURE_TIMEOUT", "3000000", TIMEOUT_MAX),
    ("RUN_TIMEOUT", "9223372037", TIMEOUT_MAX),
    ("LOCK_TIMEOUT", "1e300", TIMEOUT_MAX),
]


@pytest.mark.parametrize(("name", "value", "limit"), TOO_LARGE)
def test_value_beyond_what_redis_or_the_platform_takes_exits_78(
    run_snap, redis_db, camera_dir, name, value, limit
):
    result = run_snap(**{name: value})

    assert result.returncode == 78
    assert re.fullmatch(
        rf"snap: error: {name}='{value}' is invalid: expected [^\n]+ {limit}\n", result.stderr
    )
    assert camera_events(camera_dir) == []
    assert redis_db.keys("*") == []


def test_largest_image_expiry_redis_takes_is_stored_with_its_ttl(run_snap, redis_db):
    result = run_snap("--json", IMAGE_EXPIRY=str(IMAGE_EXPIRY_MAX))

    assert result.returncode == 0, result.stderr
    assert redis_db.ttl(json.loads(result.stdout)["key"]) > IMAGE_EXPIRY_MAX - 60


def test_largest_timeouts_are_taken(run_snap, redis_db):
    largest = str(TIMEOUT_MAX)

    result = run_snap(
        REDIS_TIMEOUT=largest, CAPTURE_TIMEOUT=largest, RUN_TIMEOUT=largest, LOCK_TIMEOUT=largest
    )

    assert result.returncode == 0, result.stderr


def test_redis_url_timeout_option_beyond_the_platform_exits_78(run_snap, redis_server, camera_dir):
    result = run_snap(REDIS_URL=f"{redis_server.url}/0?socket_timeout=1e10")

    assert result.returncode == 78
    assert "socket_timeout=1e+10 is over 2147483 s" in result.stderr
    assert camera_events(camera_dir) == []


@pytest.mark.parametrize("name", ["CAMERA_NAME", "IMAGE_KEY_PREFIX", "SPOOL_DIR", "REDIS_URL"])
def test_value_that_is_not_utf8_exits_78_naming_it(run_snap, camera_dir, name):
    # A str with a lone surrogate reaches the child as the undecodable byte 0xe9.
    result = run_snap(**{name: "caf\udce9"})

    assert result.returncode == 78
    assert result.stderr == f"snap: error: {name}='caf\\udce9' is invalid: not UTF-8 text\n"
    assert camera_events(camera_dir) == []


def test_redis_url_option_redis_py_refuses_exits_78_keeping_the_shot(
    run_snap, redis_server, spool_dir
):
    result = run_snap(REDIS_URL=f"{redis_server.url}/0?health_check_interval=abc")

    assert result.returncode == 78
    assert "REDIS_URL=" in result.stderr and "health_check_interval" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
