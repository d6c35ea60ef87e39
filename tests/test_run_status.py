"""Each camera's status hash in the real Redis, as each run records it."""

from __future__ import annotations

import json
import socket
import time

from helpers import STATUS_FIELDS, down_redis_url, status_of

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


def test_emptied_state_file_does_not_wipe_the_status(shoot, redis_db, spool_dir):
    stored = json.loads(shoot("--json").stdout)
    (state,) = spool_dir.glob(".status-*")
    state.write_bytes(b"")  # a power cut before the data reached the disk

    shoot(FAKE_CAMERA_FAULTS="absent")

    fields = status_of(redis_db)
    assert (fields["last_key"], fields["last_stored"]) == (stored["key"], str(stored["timestamp"]))
    assert (fields["last_exit"], fields["failures"]) == ("69", "1")


def test_failed_run_with_another_spool_never_rewinds_the_status(shoot, redis_db, tmp_path):
    hand_spool = tmp_path / "hand-spool"
    shoot(SPOOL_DIR=str(hand_spool))
    (state,) = hand_spool.glob(".status-*")
    document = json.loads(state.read_text())
    document["fields"].update(last_stored=int(time.time()) - 86400, last_key="image:old")
    state.write_text(json.dumps(document))  # a test shot taken by hand a day ago
    stored = json.loads(shoot("--json").stdout)

    shoot(SPOOL_DIR=str(hand_spool), FAKE_CAMERA_FAULTS="absent")

    fields = status_of(redis_db)
    assert (fields["last_key"], fields["last_stored"]) == (stored["key"], str(stored["timestamp"]))
    assert (fields["last_exit"], fields["failures"]) == ("69", "1")


def test_run_cut_by_run_timeout_after_storing_its_shot_records_it(
    shoot, stalling_redis, redis_db, spool_dir
):
    assert shoot(REDIS_URL=down_redis_url()).returncode == 75  # a backlog to deliver
    cut = shoot("--json", REDIS_URL=stalling_redis, RUN_TIMEOUT="3", REDIS_TIMEOUT="30")
    assert cut.returncode == 0, cut.stderr

    shoot(FAKE_CAMERA_FAULTS="absent")

    fields = status_of(redis_db)
    assert fields["last_key"] == json.loads(cut.stdout)["key"]
    assert (fields["last_exit"], fields["failures"]) == ("69", "1")
