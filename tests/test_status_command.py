"""--status over a fleet: one line or JSON per camera, and an exit code a watcher acts on."""

from __future__ import annotations

import json
import re
import time

import pytest
from helpers import STATUS_FIELDS, camera_events


def test_status_exits_0_when_every_camera_stored_a_shot_within_stale(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed")

    result = shoot("--status", "--stale", "600")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.partition(",")[0] for line in lines] == ["garden: ok", "shed: ok"]
    assert all("exit 0, 0 failures, 0 spooled" in line for line in lines)


def test_status_exits_1_when_a_camera_stored_no_shot_within_stale(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed")
    redis_db.hset("snap:camera:shed", "last_stored", int(time.time()) - 1000)

    result = shoot("--status", "--stale", "600")

    assert result.returncode == 1
    assert result.stdout.splitlines()[1].startswith("shed: STALE, last shot 16 min ago")


def test_status_exits_1_for_a_camera_that_never_stored_a_shot(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed", FAKE_CAMERA_FAULTS="absent")

    result = shoot("--status")

    assert result.returncode == 1
    assert re.match(
        r"shed: STALE, no shot stored yet, exit 69, 1 failure, 0 spooled; "
        r"last error [01] s ago: camera 0 not available: no camera detected",
        result.stdout.splitlines()[1],
    )


def test_status_exits_1_when_no_camera_has_a_status(shoot, redis_db):
    result = shoot("--status")

    assert result.returncode == 1
    assert result.stdout.startswith("no camera status under snap:camera:* at redis://")


def test_status_json_is_strict_json_of_every_camera(shoot, redis_db):
    shoot()

    result = shoot("--status", "--json", "--stale", "60")

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    report = json.loads(result.stdout, parse_constant=no_constants)
    assert result.returncode == 0
    assert (report["ok"], report["stale_seconds"]) == (True, 60)
    (garden,) = report["cameras"]
    assert STATUS_FIELDS < set(garden)
    assert (garden["camera"], garden["state"], garden["failures"]) == ("garden", "ok", 0)
    assert 0 <= garden["age"] <= 5


def test_status_lists_no_shot_and_no_other_hash(shoot, redis_db):
    shoot()
    redis_db.set("snap:camera:notes", "a string, not a hash")

    result = shoot("--status", "--json")

    assert [camera["camera"] for camera in json.loads(result.stdout)["cameras"]] == ["garden"]


def test_status_with_redis_down_exits_75(shoot, down_redis):
    result = shoot("--status", REDIS_URL=down_redis)

    assert result.returncode == 75
    assert "Redis unreachable" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stale", "60"], "--stale goes with --status"),
        (["--status", "--check"], "not allowed with"),
        (["--status", "--dry-run"], "not allowed with"),
        (["--status", "--install-timer"], "not allowed with"),
        (["--status", "--stale", "0"], "expected a number of seconds greater than 0"),
        (["--status", "--stale", "soon"], "expected a number of seconds greater than 0"),
    ],
)
def test_status_usage_errors_exit_64(shoot, camera_dir, args, message):
    result = shoot(*args)

    assert result.returncode == 64
    assert message in result.stderr
    assert camera_events(camera_dir) == []


def test_status_help_names_the_options(shoot):
    help_text = shoot("--help").stdout

    assert "--status" in help_text
    assert "--stale SECONDS" in help_text


def test_status_prefix_under_image_exits_78_in_one_line(shoot, redis_db):
    result = shoot("--status", STATUS_PREFIX="image:status", IMAGE_KEY_PREFIX="garden")

    assert result.returncode == 78
    assert result.stderr.startswith("snap: error: STATUS_PREFIX='image:status' is invalid: ")
    assert result.stderr.count("\n") == 1
