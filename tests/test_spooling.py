"""A shot Redis did not take is kept in the spool and delivered by a later run; what goes
wrong in the spool ends in one line."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis
from helpers import (
    camera_events,
    down_redis_url,
    running_redis,
    spooled,
    spooled_fields,
    start_redis,
    wait_for_event,
)


def test_spooled_shot_carries_what_is_needed_to_store_it_later(run_snap, spool_dir, down_redis):
    result = run_snap(CAMERA_METADATA="ExposureTime", REDIS_URL=down_redis)

    assert result.returncode == 75
    [jpeg] = spooled(spool_dir)
    fields = spooled_fields(jpeg)
    assert fields["mime_type"] == "image/jpeg"
    assert isinstance(fields["lux"], int) and isinstance(fields["exposure_time"], int)
    assert jpeg.name.startswith(f"{fields['timestamp']}-")
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"


def spooled_timestamp(jpeg: Path) -> int:
    return spooled_fields(jpeg)["timestamp"]


def wait_for_text(path: Path, text: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {count} x {text!r} in {path.read_text()!r}"
        time.sleep(0.05)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, which the test may kill and restart on the same port."""
    servers = [start_redis(tmp_path / "own")]
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.stop()


def test_redis_killed_then_restarted_gets_the_backlog_oldest_first_with_remaining_ttl(
    run_snap, snap_process, own_redis, camera_dir, spool_dir
):
    server = own_redis[0]
    first = snap_process(
        REDIS_URL=server.url,
        IMAGE_EXPIRY="100",
        SETTLE_TIMEOUT="2",
        FAKE_CAMERA_FAULTS="never-settle",
    )
    wait_for_event(camera_dir, "start")
    server.process.kill()
    server.process.wait()
    first.wait(timeout=30)
    time.sleep(1.1)  # the next shot falls in another second
    second = run_snap(REDIS_URL=server.url, IMAGE_EXPIRY="100")
    backlog = [spooled_timestamp(jpeg) for jpeg in spooled(spool_dir)]
    time.sleep(1.1)
    own_redis.append(start_redis(server.workdir, port=server.port))
    monitor_log = spool_dir.parent / "monitor.log"
    with monitor_log.open("w") as log:
        monitor = subprocess.Popen(["redis-cli", "-p", str(server.port), "monitor"], stdout=log)
        wait_for_text(monitor_log, "OK\n")  # monitoring
        third = run_snap("--json", REDIS_URL=server.url, IMAGE_EXPIRY="100")
        wait_for_text(monitor_log, '"HSET"', count=3)  # its own shot and the backlog's two
        monitor.terminate()
        monitor.wait()

    assert first.returncode == 75 and second.returncode == 75
    assert third.returncode == 0, third.stderr
    assert len(backlog) == 2 and backlog[0] < backlog[1]
    client = redis.Redis(port=server.port)
    own_key = json.loads(third.stdout)["key"]
    delivered = [key.decode() for key in client.keys("image:*") if key.decode() != own_key]
    assert sorted(int(client.hget(key, "timestamp")) for key in delivered) == backlog
    now = time.time()
    for key in delivered:
        expected_ttl = int(client.hget(key, "timestamp")) + 100 - now
        assert abs(client.ttl(key) - expected_ttl) <= 2
    writes = re.findall(r'"HSET" "(image:[^"]+)"', monitor_log.read_text())
    assert writes[0] == own_key
    assert [int(key.rpartition(":")[2]) for key in writes[1:]] == backlog
    assert spooled(spool_dir) == []
    assert third.stderr.count("delivered the spooled shot") == 2


def test_spooled_shot_past_its_own_expiry_is_discarded(run_snap, redis_db, spool_dir, down_redis):
    run_snap(REDIS_URL=down_redis, IMAGE_EXPIRY="1")
    time.sleep(2.1)  # the shot's expiry passes

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert "discarded the spooled shot" in result.stderr and "past its expiry" in result.stderr
    assert len(redis_db.keys("image:*")) == 1
    assert spooled(spool_dir) == []


def test_fifo_planted_as_a_spooled_jpeg_holds_up_no_run(run_snap, redis_db, spool_dir, down_redis):
    run_snap(REDIS_URL=down_redis)
    run_snap(REDIS_URL=down_redis)
    planted, behind = spooled(spool_dir)
    behind_key = f"image:{spooled_fields(behind)['timestamp']}"
    planted.unlink()
    os.mkfifo(planted)  # reading it would wait for a writer that never comes

    result = run_snap(RUN_TIMEOUT="30")

    assert result.returncode == 0, result.stderr
    assert "cannot be delivered: its JPEG cannot be read (not a regular file)" in result.stderr
    assert redis_db.exists(behind_key)
    assert planted.with_suffix(".json.unreadable").exists()


def test_healthy_run_removes_what_a_killed_run_left(run_snap, spool_dir):
    spool_dir.mkdir(parents=True, exist_ok=True)
    orphan = spool_dir / "1700000000-1-abcdef.jpg"  # a JPEG whose .json was never written
    orphan.write_bytes(b"\xff\xd8")
    two_days_ago = time.time() - 2 * 86400
    os.utime(orphan, (two_days_ago, two_days_ago))

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert not orphan.exists()


def test_spooled_shot_keeps_the_key_prefix_and_expiry_it_was_taken_with(
    run_snap, redis_db, spool_dir, down_redis
):
    run_snap(REDIS_URL=down_redis, IMAGE_KEY_PREFIX="image:garden", IMAGE_EXPIRY="300")
    [spooled_jpeg] = spooled(spool_dir)
    timestamp = spooled_fields(spooled_jpeg)["timestamp"]

    result = run_snap(IMAGE_EXPIRY="3600")

    assert result.returncode == 0, result.stderr
    assert redis_db.exists(f"image:garden:{timestamp}")
    assert 0 < redis_db.ttl(f"image:garden:{timestamp}") <= 300


def test_spool_over_its_cap_drops_the_oldest_shots(run_snap, spool_dir, big_jpeg, down_redis):
    down = down_redis
    results = [
        run_snap(REDIS_URL=down, SPOOL_MAX_MB="1", FAKE_CAMERA_JPEG=str(big_jpeg)) for _ in range(4)
    ]

    kept = spooled(spool_dir)
    assert [result.returncode for result in results] == [75] * 4
    assert len(kept) == 2
    assert sum(path.stat().st_size for path in spool_dir.iterdir()) <= 1_000_000
    dropped = [
        line for result in results for line in result.stderr.splitlines() if "dropped" in line
    ]
    assert len(dropped) == 2
    assert all("SPOOL_MAX_MB=1" in line for line in dropped)


def test_unwritable_spool_dir_exits_73_naming_it(run_snap, tmp_path, camera_dir):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")

    result = run_snap(SPOOL_DIR=str(not_a_directory / "spool"))

    assert result.returncode == 73
    assert result.stderr.count("\n") == 1
    assert str(not_a_directory / "spool") in result.stderr
    assert camera_events(camera_dir) == []


def test_spooled_shot_with_unreadable_fields_is_set_aside(run_snap, redis_db, spool_dir):
    name = f"{int(time.time())}-1-abc"
    spool_dir.mkdir()
    (spool_dir / f"{name}.json").write_text("{not json")
    (spool_dir / f"{name}.jpg").write_bytes(b"\xff\xd8\xff\xd9")

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert f"spooled shot {name}.jpg cannot be delivered: its fields are unreadable" in (
        result.stderr
    )
    assert (spool_dir / f"{name}.json.unreadable").exists()
    assert (spool_dir / f"{name}.jpg").exists()
    assert len(redis_db.keys("image:*")) == 1


def test_delivery_waits_for_the_run_that_holds_the_spool(run_snap, redis_db, spool_dir, down_redis):
    run_snap(REDIS_URL=down_redis)
    with open(spool_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        held = run_snap()

    released = run_snap()

    assert (held.returncode, released.returncode) == (0, 0)
    assert "delivered" not in held.stderr
    assert "delivered the spooled shot" in released.stderr
    assert spooled(spool_dir) == []
    assert len(redis_db.keys("image:*")) == 3


def test_spooled_shot_redis_refuses_does_not_hold_up_the_ones_behind_it(
    run_snap, tmp_path, spool_dir, huge_jpeg, down_redis
):
    down = down_redis
    run_snap(REDIS_URL=down, FAKE_CAMERA_JPEG=str(huge_jpeg))
    run_snap(REDIS_URL=down)
    with running_redis(tmp_path / "limited", "--proto-max-bulk-len", "1mb") as server:
        result = run_snap(REDIS_URL=server.url)
        stored = server.client().keys("image:*")

    assert result.returncode == 0, result.stderr
    assert len(stored) == 2  # its own shot and the small spooled one
    assert "kept for later: Redis dropped the connection" in result.stderr
    [left] = spooled(spool_dir)
    assert left.read_bytes() == huge_jpeg.read_bytes()


def test_no_half_file_is_taken_for_a_shot(run_snap, redis_db, spool_dir):
    spool_dir.mkdir()
    (spool_dir / ".1700000000-1-abc.jpg.partial").write_bytes(b"\xff\xd8half")
    (spool_dir / "1700000001-1-abc.jpg").write_bytes(b"\xff\xd8no fields yet")

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert len(redis_db.keys("image:*")) == 1
    assert "spooled" not in result.stderr


def test_spool_lock_planted_as_a_symlink_is_not_followed(run_snap, spool_dir, tmp_path, down_redis):
    spool_dir.mkdir()
    target = tmp_path / "created-through-the-link"
    (spool_dir / ".lock").symlink_to(target)

    result = run_snap(REDIS_URL=down_redis)

    assert result.returncode == 75
    assert "cannot open the spool's lock" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert not target.exists()


def make_backlog(run_snap, spool_dir: Path) -> None:
    result = run_snap(REDIS_URL=down_redis_url())
    assert result.returncode == 75 and len(spooled(spool_dir)) == 1


def test_stored_shot_exits_0_when_run_timeout_cuts_the_backlog_short(
    run_snap, stalling_redis, redis_db, spool_dir
):
    make_backlog(run_snap, spool_dir)

    result = run_snap("--json", REDIS_URL=stalling_redis, RUN_TIMEOUT="3", REDIS_TIMEOUT="30")

    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "snap: warning: run timed out after 3 s while delivering the spool; the shot was stored\n"
    )
    assert redis_db.exists(json.loads(result.stdout)["key"])
    assert len(spooled(spool_dir)) == 1
    assert result.seconds < 3 + 5


def test_redis_stalling_mid_run_is_given_up_after_redis_timeout(
    run_snap, stalling_redis, redis_db, spool_dir
):
    make_backlog(run_snap, spool_dir)

    result = run_snap("--json", REDIS_URL=stalling_redis, RUN_TIMEOUT="30", REDIS_TIMEOUT="1")

    assert result.returncode == 0, result.stderr
    assert "spool delivery stopped: Redis unreachable" in result.stderr
    assert "(timeout after 1 s)" in result.stderr
    assert len(spooled(spool_dir)) == 1
    assert result.seconds < 1 + 5


@pytest.mark.parametrize("target", ["/dev/full", "broken pipe"])
def test_stdout_that_cannot_be_written_changes_neither_the_code_nor_the_delivery(
    run_snap, redis_db, spool_dir, target
):
    make_backlog(run_snap, spool_dir)
    if target == "/dev/full":
        stdout = open("/dev/full", "w")  # noqa: SIM115
    else:
        reader, writer = os.pipe()
        os.close(reader)
        stdout = os.fdopen(writer, "w")

    with stdout:
        result = run_snap("--json", stdout=stdout)

    assert result.returncode == 0, result.stderr
    assert "snap: warning: cannot write to standard output: " in result.stderr
    assert "delivered the spooled shot" in result.stderr
    assert len(redis_db.keys("image:*")) == 2
    assert spooled(spool_dir) == []


def test_full_stderr_changes_neither_the_code_nor_the_delivery(run_snap, redis_db, spool_dir):
    make_backlog(run_snap, spool_dir)

    with open("/dev/full", "w") as full:
        result = run_snap("--verbose", stderr=full)

    assert result.returncode == 0
    assert result.stdout.startswith("stored image:")
    assert len(redis_db.keys("image:*")) == 2
    assert spooled(spool_dir) == []
