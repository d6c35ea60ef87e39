"""Each camera's status hash in the real Redis, --status over a fleet, and MIN_LUX's dark skip."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from helpers import camera_events, free_port

from snapcam import __version__, status, store
from snapcam.guard import Guard
from snapcam.spool import Spool

STATUS_FIELDS = {
    "last_run",
    "last_exit",
    "last_stored",
    "last_key",
    "failures",
    "first_failure",
    "last_failure",
    "last_error",
    "skipped_dark",
    "spooled",
    "version",
    "host",
}
DARK = {"MIN_LUX": "10", "FAKE_CAMERA_LUX": "3"}


def status_of(redis_db, camera: str = "garden") -> dict[str, str]:
    fields = redis_db.hgetall(f"snap:camera:{camera}")
    return {name.decode(): value.decode() for name, value in fields.items()}


@pytest.fixture
def shoot(run_snap):
    """run_snap as the camera named garden, unless told otherwise."""

    def run(*args: str, **env: str):
        return run_snap(*args, **{"CAMERA_NAME": "garden", **env})

    return run


def down_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}"


# --- The status hash -----------------------------------------------------------------------


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


def test_redis_down_run_is_reported_by_the_next_run_that_reaches_redis(shoot, redis_db):
    before = int(time.time())
    down = shoot(REDIS_URL=down_redis())
    assert down.returncode == 75
    assert redis_db.keys("snap:camera:*") == []

    shoot()

    fields = status_of(redis_db)
    assert fields["last_error"].startswith("not stored: Redis unreachable at redis://127.0.0.1:")
    assert before <= int(fields["last_failure"]) <= int(fields["last_run"])
    assert fields["first_failure"] == fields["last_failure"]


def test_failures_count_runs_that_could_not_reach_redis(shoot, redis_db):
    first = int(time.time())
    shoot(REDIS_URL=down_redis())
    shoot(REDIS_URL=down_redis())

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


@pytest.fixture
def guard(tmp_path) -> Guard:
    """A run's guard, its deadline not armed."""
    return Guard(Spool(tmp_path / "spool", 1_000_000))


def test_status_write_on_the_runs_own_client_is_bounded(make_config, guard, silent_redis):
    config = make_config(REDIS_URL=silent_redis, REDIS_TIMEOUT="30", CAMERA_NAME="garden")
    client = store.redis_client(config)  # the run's client, waiting up to 30 s
    started = time.monotonic()

    status.write_hash(config, guard, dict(status.STATE_FIELDS), client)

    assert time.monotonic() - started < status.STATUS_SECONDS + 0.5


def test_status_write_keeps_clear_of_the_runs_deadline(make_config, guard, silent_redis):
    config = make_config(REDIS_URL=silent_redis, CAMERA_NAME="garden")
    guard.deadline = time.monotonic() + status.DEADLINE_MARGIN + 0.1
    started = time.monotonic()

    status.write_hash(config, guard, dict(status.STATE_FIELDS))

    assert time.monotonic() - started < 0.2


def test_recorded_error_line_is_one_line_without_the_password(make_config, guard):
    config = make_config(REDIS_URL="redis://garden:hunter2@127.0.0.1:1", CAMERA_NAME="garden")
    guard.spool.prepare()

    failure = "unexpected X: redis://garden:hunter2@127.0.0.1:1\n" + "y" * 1000
    status.record_failure(config, guard, 70, failure, False)

    line = status.read_state(status.state_path(config))["last_error"]
    assert line.startswith("unexpected X: redis://garden:****@127.0.0.1:1 yyy")
    assert len(line) == status.ERROR_MAX_CHARS


def test_status_bug_is_one_warning_never_the_runs_failure(make_config, guard, monkeypatch, caplog):
    config = make_config(CAMERA_NAME="garden")

    def broken(spool):
        raise ValueError("a bug")

    monkeypatch.setattr(status, "spooled", broken)

    status.record_failure(config, guard, 69, "camera 0 not available")

    assert [record.getMessage() for record in caplog.records] == [
        "status not recorded: unexpected ValueError: a bug"
    ]


def test_status_state_on_disk_unreadable_starts_afresh(make_config, tmp_path):
    config = make_config(CAMERA_NAME="garden/pi")
    path = status.state_path(config)
    path.parent.mkdir()
    path.write_text("{not json")

    assert path.name == ".status-garden%2Fpi"
    assert status.read_state(path) == status.STATE_FIELDS


# --- --status ------------------------------------------------------------------------------


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


def test_status_with_redis_down_exits_75(shoot):
    result = shoot("--status", REDIS_URL=down_redis())

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


# --- MIN_LUX ---------------------------------------------------------------------------------


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
    assert re.match(r"garden: dark, no shot stored yet, too dark [01] s ago", result.stdout)


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
