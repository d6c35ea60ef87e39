"""Each camera's status hash in the real Redis, as each run records it."""

from __future__ import annotations

import json
import socket
import time

from helpers import STATUS_FIELDS, status_of

from snapcam import __version__, status


def test_good_run_writes_every_status_field(shoot, redis_db):
    before = int(time.time())

    result = shoot("--json")

    report = json.loads(result.stdout)
    fields = status_of(redis_db)
    assert set(fields) == STATUS_FIELDS
    assert before <= int(fields["last_run"]) <= int(time.time())
    assert fields["last_stored"] == str(report["timestamp"])
    assert fields["last_key"] == report["key"]
    assert [fields[name] for name in ("last_exit", "failures", "spooled", "skipped_dark")] == [
        "0",
        "0",
        "0",
        "0",
    ]
    assert (fields["first_failure"], fields["last_failure"], fields["last_error"]) == ("0", "0", "")
    assert (fields["version"], fields["host"]) == (__version__, socket.gethostname())


def test_status_hash_never_expires(shoot, redis_db):
    shoot()

    assert redis_db.ttl("snap:camera:garden") == -1


def test_camera_failure_with_redis_up_is_recorded_at_once(shoot, redis_db):
    before = int(time.time())

    result = shoot(FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    fields = status_of(redis_db)
    assert (fields["last_exit"], fields["failures"], fields["last_stored"]) == ("69", "1", "0")
    assert fields["last_error"].startswith("camera 0 not available: no camera detected")
    assert before <= int(fields["last_failure"]) == int(fields["first_failure"]) <= time.time()


def test_good_run_after_failures_keeps_the_last_error_and_counts_none(shoot, redis_db):
    shoot(FAKE_CAMERA_FAULTS="absent")
    failed = status_of(redis_db)

    shoot()

    fields = status_of(redis_db)
    assert (fields["last_exit"], fields["failures"]) == ("0", "0")
    assert fields["last_error"] == failed["last_error"]
    assert fields["last_failure"] == failed["last_failure"]


def test_redis_down_run_is_reported_by_the_next_run_that_reaches_redis(shoot, redis_db, down_redis):
    before = int(time.time())
    down = shoot(REDIS_URL=down_redis)
    assert down.returncode == 75
    assert redis_db.keys("snap:camera:*") == []

    shoot()

    fields = status_of(redis_db)
    assert fields["last_error"].startswith("not stored: Redis unreachable at redis://127.0.0.1:")
    assert before <= int(fields["last_failure"]) <= int(fields["last_run"])
    assert fields["first_failure"] == fields["last_failure"]


def test_failures_count_runs_that_could_not_reach_redis(shoot, redis_db, down_redis):
    first = int(time.time())
    shoot(REDIS_URL=down_redis)
    shoot(REDIS_URL=down_redis)

    shoot(FAKE_CAMERA_FAULTS="absent")

    fields = status_of(redis_db)
    assert fields["failures"] == "3"
    assert first <= int(fields["first_failure"]) <= int(fields["last_failure"])
    assert fields["spooled"] == "2"  # the two shots Redis did not take


def test_run_ended_by_the_watchdog_is_reported_by_the_next_run(shoot, redis_db):
    ended = shoot(RUN_TIMEOUT="2", FAKE_CAMERA_FAULTS="hang-start,hang-hard")
    assert ended.returncode == 69

    shoot()

    fields = status_of(redis_db)
    assert fields["last_error"].startswith("run timed out after 2 s while starting the camera")
    assert fields["last_exit"] == "0"


def test_dry_run_writes_no_status(shoot, redis_db):
    shoot("--dry-run")

    assert redis_db.keys("*") == []


def test_empty_status_prefix_writes_no_status(shoot, redis_db, spool_dir):
    result = shoot(STATUS_PREFIX="", FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 69
    assert redis_db.keys("*") == []
    assert not list(spool_dir.glob(".status-*"))


def test_status_write_to_a_silent_redis_is_bounded(shoot, silent_redis):
    result = shoot(REDIS_URL=silent_redis, REDIS_TIMEOUT="30", FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 69
    assert result.stderr.count("\n") == 1
    assert result.seconds < 1 + status.STATUS_SECONDS + 1.5
