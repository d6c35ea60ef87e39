"""snapcam.status in-process: recording a run's status, bounded, on disk and in Redis."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import threading
import time

import pytest
import redis

from snapcam import status, store


def test_status_write_on_the_runs_own_client_is_bounded(make_config, guard, silent_redis):
    config = make_config(REDIS_URL=silent_redis, REDIS_TIMEOUT="30", CAMERA_NAME="garden")
    client = store.redis_client(config)  # the run's client, waiting up to 30 s
    started = time.monotonic()

    status.write_hash(config, guard, dict(status.STATE_FIELDS), lambda fields: None, client=client)

    assert time.monotonic() - started < status.STATUS_SECONDS + 0.5


def test_status_write_keeps_clear_of_the_runs_deadline(make_config, guard, silent_redis):
    config = make_config(REDIS_URL=silent_redis, CAMERA_NAME="garden")
    guard.deadline = time.monotonic() + status.DEADLINE_MARGIN + 0.1
    started = time.monotonic()

    status.write_hash(config, guard, dict(status.STATE_FIELDS), lambda fields: None)

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

    assert path.name.startswith(".status-garden%2Fpi-")
    assert status.read_state(path) == status.STATE_FIELDS


def redis_cli_words(line: str) -> list[str]:
    """A line split as redis-cli splits what is typed: at spaces, quotes taken away,
    backslashes outside quotes kept."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    return list(lexer)


@pytest.mark.parametrize(
    "name", ["front door", "shed\tnorth", 'the "barn"', "it's", "дом сад", "cam*[1]?"]
)
def test_acl_hint_for_any_camera_name_is_a_rule_redis_accepts(make_config, redis_db, name):
    config = make_config(CAMERA_NAME=name)
    hint = store.permission_hint("No permissions to access a key", config)
    rules = redis_cli_words(hint.partition("ACL SETUSER default ")[2])
    redis_db.execute_command("ACL", "SETUSER", "hinted", "reset", "on", "nopass", "+hset", *rules)
    try:
        hinted = redis.Redis(port=redis_db.connection_pool.connection_kwargs["port"])
        hinted.execute_command("AUTH", "hinted", "any")

        assert hinted.hset(store.status_key(config), "last_run", 1) == 1
    finally:
        redis_db.execute_command("ACL", "DELUSER", "hinted")


@pytest.mark.parametrize("name", ["garden.partial", "1700000000-1-abcdef.json", "shed.jpg"])
def test_state_file_name_is_no_spool_name_whatever_the_camera_name(make_config, name):
    path = status.state_path(make_config(CAMERA_NAME=name))

    assert path.name.startswith(".status-")
    assert "." not in path.name[len(".status-") :]


def test_failed_state_write_on_a_full_disk_leaves_no_file(make_config, guard, small_disk):
    config = make_config(CAMERA_NAME="garden", SPOOL_DIR=str(small_disk))
    with contextlib.suppress(OSError), open(small_disk / "ballast", "wb", buffering=0) as ballast:
        while True:
            ballast.write(b"x" * 4096)

    status.record_failure(config, guard, 69, "camera 0 not available", False)

    assert [path.name for path in small_disk.iterdir()] == ["ballast"]


def test_camera_of_a_long_name_keeps_its_state_under_a_short_file_name(make_config, guard):
    name = "Ж" * 100
    config = make_config(CAMERA_NAME=name)
    guard.spool.prepare()

    status.record_failure(config, guard, 69, "camera 0 not available", False)
    status.record_failure(config, guard, 69, "camera 0 not available", False)

    path = status.state_path(config)
    assert len(path.name) < 100
    assert status.read_state(path)["failures"] == 2
    assert json.loads(path.read_text())["camera"] == name


def test_state_file_and_its_directory_are_synced_before_the_rename(make_config, guard, monkeypatch):
    config = make_config(CAMERA_NAME="garden")
    guard.spool.prepare()
    synced = []
    fsync = os.fsync

    def noting(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), status.state_path(config).exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", noting)

    status.record_failure(config, guard, 69, "camera 0 not available", False)

    (file, file_renamed), (directory, _) = synced
    assert file.endswith(".tmp") and not file_renamed
    assert directory == str(config.spool_dir)


@pytest.fixture
def stalled_disk(monkeypatch):
    """fsync that does not return until the test ends, as on a worn SD card."""
    released = threading.Event()
    monkeypatch.setattr(os, "fsync", lambda fd: released.wait(30))
    yield
    released.set()


def test_state_write_on_a_stalled_disk_ends_within_the_status_bound(
    make_config, guard, stalled_disk
):
    config = make_config(CAMERA_NAME="garden")
    guard.spool.prepare()
    started = time.monotonic()

    status.record_failure(config, guard, 75, "not stored: Redis down", False)

    assert time.monotonic() - started < status.STATUS_SECONDS + 0.5


def test_state_write_on_a_stalled_disk_ends_before_the_last_resort_alarm(
    make_config, guard, stalled_disk
):
    config = make_config(CAMERA_NAME="garden")
    guard.spool.prepare()
    alarms = []
    previous = signal.signal(signal.SIGALRM, lambda number, frame: alarms.append(time.monotonic()))
    try:
        signal.setitimer(signal.ITIMER_REAL, status.STATUS_SECONDS * 0.8)

        status.record_failure(config, guard, 75, "run timed out", False, expiring=True)

        assert alarms == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_dark_skip_after_a_failure_records_exit_0(make_config, guard):
    config = make_config(CAMERA_NAME="garden")
    guard.spool.prepare()
    status.record_failure(config, guard, 69, "camera 0 not available", False)

    status.record_dark(config, guard)

    assert status.read_state(status.state_path(config))["last_exit"] == 0


def test_failure_line_kept_in_the_status_never_shows_the_password(make_config, guard):
    config = make_config(CAMERA_NAME="garden", REDIS_URL="redis://:s3cret-pw@localhost:1/0")
    guard.spool.prepare()

    line = "Redis refused access at redis://:s3cret-pw@localhost:1/0: password 's3cret-pw'"

    status.record_failure(config, guard, 77, line, False)

    state = status.read_state(status.state_path(config))
    assert "s3cret-pw" not in state["last_error"]
    assert state["last_error"].startswith("Redis refused access at redis://")


def test_failed_run_records_when_it_ran(make_config, guard):
    config = make_config(CAMERA_NAME="garden")
    guard.spool.prepare()
    before = int(time.time())

    status.record_failure(config, guard, 69, "camera 0 not available", False)

    state = status.read_state(status.state_path(config))
    assert state["last_run"] >= before
    assert state["last_run"] == state["last_failure"]
