"""Unattended faults: each ends in bounded time, with one line, and the shot where it belongs."""

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from helpers import camera_events, free_port, start_redis

from snapcam import store
from snapcam.config import Config, load_config
from snapcam.errors import SnapError
from snapcam.guard import Guard
from snapcam.run import shot_kept
from snapcam.spool import Spool, fields_from_json


def spooled(spool_dir: Path) -> list[Path]:
    """The JPEGs of whole spooled shots, oldest first."""
    return sorted(
        (path.with_suffix(".jpg") for path in spool_dir.glob("*.json")),
        key=lambda path: (int(path.name.partition("-")[0]), path.name),
    )


def spooled_fields(jpeg: Path) -> dict:
    return fields_from_json(jpeg.with_suffix(".json").read_text())


def spooled_timestamp(jpeg: Path) -> int:
    return spooled_fields(jpeg)["timestamp"]


def wait_for_event(camera_dir: Path, event: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while event not in camera_events(camera_dir):
        assert time.monotonic() < deadline, f"no {event} in {camera_events(camera_dir)}"
        time.sleep(0.05)


def wait_for_text(path: Path, text: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {count} x {text!r} in {path.read_text()!r}"
        time.sleep(0.05)


def stopped_while_capturing(snap_process, camera_dir: Path, signal_number: int):
    """A run sent the signal while its capture hangs, once it has ended."""
    process = snap_process(CAPTURE_TIMEOUT="30", FAKE_CAMERA_FAULTS="hang-capture")
    wait_for_event(camera_dir, "capture_file")
    process.send_signal(signal_number)
    process.wait(timeout=10)
    return process


def processes_mentioning(text: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if text in line and "ps -eo" not in line]


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, which the test may kill and restart on the same port."""
    servers = [start_redis(tmp_path / "own")]
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.stop()


# --- Spool: a shot Redis did not take is kept --------------------------------


def test_redis_not_listening_keeps_the_shot_in_the_spool(run_snap, spool_dir, tmp_path):
    output = tmp_path / "shot.jpg"

    result = run_snap("--output", str(output), REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    assert result.returncode == 75
    assert re.fullmatch(
        r"snap: error: not stored: Redis unreachable at redis://127\.0\.0\.1:\d+ \(.+\);"
        r" kept in spool \(1 shot, \d+ kB\);"
        r" check that Redis runs: redis-cli -u redis://127\.0\.0\.1:\d+ ping\n",
        result.stderr,
    )
    assert result.seconds < 5
    [jpeg] = spooled(spool_dir)
    assert jpeg.read_bytes() == output.read_bytes()


def test_silent_redis_keeps_the_shot_within_the_timeout(run_snap, silent_redis, spool_dir):
    result = run_snap(REDIS_URL=silent_redis, REDIS_TIMEOUT="1")

    assert result.returncode == 75
    assert "timeout after 1 s" in result.stderr and "kept in spool" in result.stderr
    assert result.seconds < 6
    assert len(spooled(spool_dir)) == 1


def test_full_redis_keeps_the_shot(run_snap, full_redis, spool_dir):
    result = run_snap(REDIS_URL=full_redis.url)

    assert result.returncode == 75
    assert "out of memory" in result.stderr
    assert len(spooled(spool_dir)) == 1


def test_wrong_password_keeps_the_shot_and_exits_77(run_snap, tmp_path, spool_dir):
    server = start_redis(tmp_path / "locked", "--requirepass", "right")
    try:
        result = run_snap(REDIS_URL=f"redis://:wrong@127.0.0.1:{server.port}")
    finally:
        server.stop()

    assert result.returncode == 77
    assert "kept in spool (1 shot" in result.stderr
    assert len(spooled(spool_dir)) == 1


def test_spooled_shot_carries_what_is_needed_to_store_it_later(run_snap, spool_dir):
    result = run_snap(CAMERA_METADATA="ExposureTime", REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    assert result.returncode == 75
    [jpeg] = spooled(spool_dir)
    fields = spooled_fields(jpeg)
    assert fields["mime_type"] == "image/jpeg"
    assert isinstance(fields["lux"], int) and isinstance(fields["exposure_time"], int)
    assert jpeg.name.startswith(f"{fields['timestamp']}-")
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"


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


def test_spooled_shot_past_its_expiry_is_discarded(run_snap, redis_db, spool_dir):
    run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")
    time.sleep(2.1)

    result = run_snap(IMAGE_EXPIRY="1")

    assert result.returncode == 0, result.stderr
    assert "discarded the spooled shot" in result.stderr and "past its expiry" in result.stderr
    assert len(redis_db.keys("image:*")) == 1
    assert spooled(spool_dir) == []


def test_spool_over_its_cap_drops_the_oldest_shots(run_snap, spool_dir, big_jpeg):
    down = f"redis://127.0.0.1:{free_port()}"
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


def test_delivery_waits_for_the_run_that_holds_the_spool(run_snap, redis_db, spool_dir):
    run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")
    with open(spool_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        held = run_snap()

    released = run_snap()

    assert (held.returncode, released.returncode) == (0, 0)
    assert "delivered" not in held.stderr
    assert "delivered the spooled shot" in released.stderr
    assert spooled(spool_dir) == []
    assert len(redis_db.keys("image:*")) == 3


def test_check_reports_the_backlog(run_snap, spool_dir):
    run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    assert f"spool: ok ({spool_dir}, 1 shot, " in result.stdout


def test_check_shows_files_killed_runs_left(run_snap, spool_dir):
    spool_dir.mkdir()
    (spool_dir / ".1700000000-1-abcdef.jpg.partial").write_bytes(bytes(2000))

    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    assert "0 shots, 0 kB waiting; 1 unfinished file(s) of killed runs, 2 kB" in result.stdout


def test_spooled_shot_redis_refuses_does_not_hold_up_the_ones_behind_it(
    run_snap, tmp_path, spool_dir, huge_jpeg
):
    down = f"redis://127.0.0.1:{free_port()}"
    run_snap(REDIS_URL=down, FAKE_CAMERA_JPEG=str(huge_jpeg))
    run_snap(REDIS_URL=down)
    server = start_redis(tmp_path / "limited", "--proto-max-bulk-len", "1mb")
    try:
        result = run_snap(REDIS_URL=server.url)
        stored = server.client().keys("image:*")
    finally:
        server.stop()

    assert result.returncode == 0, result.stderr
    assert len(stored) == 2  # its own shot and the small spooled one
    assert "kept for later: Redis dropped the connection" in result.stderr
    [left] = spooled(spool_dir)
    assert left.read_bytes() == huge_jpeg.read_bytes()


def test_check_creates_no_spool_dir(run_snap, spool_dir):
    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    assert "spool: ok" in result.stdout and "created by the first shot" in result.stdout
    assert not spool_dir.exists()


def test_check_with_an_uncreatable_spool_dir_exits_73(run_snap, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")

    result = run_snap("--check", SPOOL_DIR=str(not_a_directory / "spool"))

    assert result.returncode == 73
    assert f"spool: FAILED: cannot create SPOOL_DIR {not_a_directory / 'spool'}" in result.stdout


def test_no_half_file_is_taken_for_a_shot(run_snap, redis_db, spool_dir):
    spool_dir.mkdir()
    (spool_dir / ".1700000000-1-abc.jpg.partial").write_bytes(b"\xff\xd8half")
    (spool_dir / "1700000001-1-abc.jpg").write_bytes(b"\xff\xd8no fields yet")

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert len(redis_db.keys("image:*")) == 1
    assert "spooled" not in result.stderr


# --- Watchdog: no run hangs ----------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "step"),
    [
        ("hang-start,hang-hard", "starting the camera"),
        ("af-hang,hang-hard", "autofocus"),
        ("hang-capture,hang-hard", "capturing"),
    ],
)
def test_camera_hung_beyond_python_exceptions_ends_within_run_timeout(
    snap_process, redis_db, camera_dir, faults, step
):
    process = snap_process(
        RUN_TIMEOUT="3",
        CAMERA_AUTOFOCUS="true",
        AUTOFOCUS_TIMEOUT="30",
        CAPTURE_TIMEOUT="30",
        FAKE_CAMERA_FAULTS=faults,
    )
    wait_for_event(camera_dir, "global_camera_info")  # the watchdog runs by then
    armed = time.monotonic()

    process.wait(timeout=30)
    seconds = time.monotonic() - armed

    assert process.returncode == 69
    assert process.stderr.read().endswith(
        f"snap: error: run timed out after 3 s while {step}; "
        "check the ribbon cable and run: rpicam-hello --list-cameras\n"
    )
    assert seconds < 3 + 2
    assert processes_mentioning(str(camera_dir.parent)) == []
    assert redis_db.keys("*") == []


def test_redis_hang_after_capture_spools_the_shot_and_ends_within_run_timeout(
    run_snap, silent_redis, spool_dir
):
    result = run_snap(RUN_TIMEOUT="3", REDIS_TIMEOUT="30", REDIS_URL=silent_redis)

    assert result.returncode == 75
    assert "run timed out after 3 s while storing in Redis; kept in spool (1 shot" in result.stderr
    assert result.seconds < 3 + 2
    assert len(spooled(spool_dir)) == 1


def test_sigterm_during_capture_closes_the_camera_and_exits_143(
    snap_process, redis_db, camera_dir, spool_dir
):
    process = stopped_while_capturing(snap_process, camera_dir, signal.SIGTERM)

    assert process.returncode == 143
    assert process.stderr.read() == "snap: error: stopped by SIGTERM\n"
    assert camera_events(camera_dir)[-1] == "close"
    assert redis_db.keys("*") == []


def test_sigterm_is_recorded_on_disk_and_reported_by_the_next_run(
    snap_process, run_snap, redis_db, camera_dir
):
    stopped_while_capturing(snap_process, camera_dir, signal.SIGTERM)
    assert redis_db.keys("*") == []  # a stopped run does not linger to reach Redis

    run_snap()

    status = redis_db.hgetall(f"snap:camera:{socket.gethostname()}")
    assert (status[b"last_error"], status[b"last_exit"]) == (b"stopped by SIGTERM", b"0")


def test_redis_is_connected_while_the_camera_starts(
    snap_process, silent_redis, silent_listener, camera_dir
):
    process = snap_process(
        REDIS_URL=silent_redis, REDIS_TIMEOUT="30", FAKE_CAMERA_START_SECONDS="5"
    )
    silent_listener.settimeout(30)
    connection, _ = silent_listener.accept()
    wait_for_event(camera_dir, "start")  # while Redis has not answered
    events = camera_events(camera_dir)
    process.kill()
    process.wait(timeout=10)
    connection.close()

    assert not any(event.startswith("capture_file") for event in events), events


@pytest.mark.parametrize(("name", "exit_code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_stop_signal_while_storing_spools_the_shot(
    snap_process, silent_redis, silent_listener, spool_dir, camera_dir, name, exit_code
):
    process = snap_process(REDIS_URL=silent_redis, REDIS_TIMEOUT="30")
    silent_listener.settimeout(30)
    connection, _ = silent_listener.accept()  # Redis is being asked (from the camera's start)
    wait_for_event(camera_dir, "close")  # and the shot is taken

    process.send_signal(getattr(signal, name))
    process.wait(timeout=10)
    connection.close()

    assert process.returncode == exit_code
    assert f"stopped by {name}; kept in spool (1 shot" in process.stderr.read()
    assert len(spooled(spool_dir)) == 1


def test_ctrl_c_during_capture_exits_130(snap_process, camera_dir):
    process = snap_process(CAPTURE_TIMEOUT="30", FAKE_CAMERA_FAULTS="hang-capture")
    wait_for_event(camera_dir, "capture_file")

    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)

    assert process.returncode == 130
    assert camera_events(camera_dir)[-1] == "close"


# --- The shot is held from the capture until Redis has it ------------------------


def test_any_exception_after_the_capture_keeps_the_shot(tmp_path):
    guard = Guard(Spool(tmp_path / "spool", 10_000_000))
    guard.spool.prepare()

    with pytest.raises(SnapError) as raised:
        with shot_kept(guard):
            guard.hold({"image_data": b"\xff\xd8", "timestamp": 1700000000, "mime_type": "x"})
            raise OverflowError("timeout value is too large")

    assert raised.value.exit_code == 70
    assert str(raised.value) == (
        "unexpected OverflowError: timeout value is too large; kept in spool (1 shot, 0 kB)"
    )
    assert len(guard.spool.entries()) == 1


def test_camera_hung_while_closing_keeps_the_shot(run_snap, redis_db, spool_dir):
    result = run_snap(RUN_TIMEOUT="3", FAKE_CAMERA_FAULTS="hang-close")

    assert result.returncode == 69
    assert re.search(
        r"run timed out after 3 s while closing the camera; kept in spool \(1 shot, \d+ kB\); ",
        result.stderr,
    )
    assert len(spooled(spool_dir)) == 1
    assert redis_db.keys("*") == []


def test_output_that_hangs_keeps_the_shot(run_snap, redis_db, spool_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody reads it: opening it for writing blocks

    result = run_snap("--output", str(fifo), RUN_TIMEOUT="3")

    assert result.returncode == 73
    assert "run timed out after 3 s while writing --output; kept in spool (1 shot" in (
        result.stderr
    )
    assert len(spooled(spool_dir)) == 1


@pytest.fixture
def spool_held(spool_dir):
    """The spool's lock, held as another run delivering a long backlog holds it."""
    spool_dir.mkdir()
    with open(spool_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_deadline_during_a_slow_save_is_not_cut_short_by_sigalrm(
    snap_process, silent_redis, silent_listener, spool_dir, spool_held
):
    process = snap_process(REDIS_URL=silent_redis, REDIS_TIMEOUT="30", RUN_TIMEOUT="2")
    silent_listener.settimeout(30)
    connection, _ = silent_listener.accept()
    storing = time.monotonic()

    process.wait(timeout=30)
    seconds = time.monotonic() - storing
    connection.close()

    assert process.returncode == 75, process.stderr.read()
    assert "while storing in Redis; kept in spool (1 shot" in process.stderr.read()
    assert 5 <= seconds < 2 + 5 + 2  # the deadline, then the bounded wait for the spool
    assert len(spooled(spool_dir)) == 1


def test_stop_signal_during_a_save_waits_for_the_shot_to_be_kept(
    snap_process, spool_dir, spool_held
):
    process = snap_process(REDIS_URL=f"redis://127.0.0.1:{free_port()}")
    for line in process.stderr:
        if "for another run to release the spool" in line:
            break

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    assert process.returncode == 143
    assert "stopped by SIGTERM; kept in spool (1 shot" in process.stderr.read()
    assert len(spooled(spool_dir)) == 1


# --- One camera, one run -------------------------------------------------------


def test_second_run_on_the_same_camera_waits_for_the_first(snap_process, redis_db, camera_dir):
    slow = {"SETTLE_TIMEOUT": "1.5", "FAKE_CAMERA_FAULTS": "never-settle"}
    first = snap_process(**slow)
    wait_for_event(camera_dir, "start")
    second = snap_process(**slow)

    first.wait(timeout=30)
    second.wait(timeout=30)

    assert (first.returncode, second.returncode) == (0, 0)
    assert len(redis_db.keys("image:*")) == 2


def test_camera_still_locked_at_lock_timeout_exits_75_naming_the_holder(
    snap_process, camera_dir, redis_db
):
    first = snap_process(SETTLE_TIMEOUT="6", FAKE_CAMERA_FAULTS="never-settle")
    wait_for_event(camera_dir, "start")
    started = time.monotonic()
    second = snap_process(LOCK_TIMEOUT="1")

    second.wait(timeout=30)
    seconds = time.monotonic() - started
    first.wait(timeout=30)

    assert second.returncode == 75
    assert f"still in use by another snap run (pid {first.pid})" in second.stderr.read()
    assert seconds < 4
    assert first.returncode == 0


def test_camera_held_by_another_program_exits_69_after_retrying(run_snap, snap_env, camera_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import picamera2, sys; c = picamera2.Picamera2(0); sys.stdin.read()",
        ],
        env=snap_env,
        stdin=subprocess.PIPE,
    )
    try:
        wait_for_event(camera_dir, "open 0")
        result = run_snap()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)

    assert result.returncode == 69
    assert "another program holds it" in result.stderr
    assert 2.5 < result.seconds < 10


# --- No overwrite ----------------------------------------------------------------


@pytest.fixture
def snap_config(redis_server, tmp_path, monkeypatch) -> Config:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    return load_config(None)


def test_shot_in_an_already_used_second_gets_its_own_key(run_snap, redis_db):
    now = int(time.time())
    for second in range(now - 1, now + 30):
        redis_db.hset(f"image:{second}", mapping={"timestamp": second, "mime_type": "other"})

    result = run_snap("--json")

    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)["key"]
    timestamp = json.loads(result.stdout)["timestamp"]
    assert key == f"image:{timestamp}.1"
    assert redis_db.hget(f"image:{timestamp}", "mime_type") == b"other"
    assert b"image_data" not in redis_db.hgetall(f"image:{timestamp}")
    assert int(redis_db.hget(key, "timestamp")) == timestamp


def test_concurrent_shots_in_one_second_each_land_whole(snap_config, redis_db):
    fields = [
        {"image_data": bytes([n]) * 100_000, "timestamp": 1700000000, "mime_type": "image/jpeg"}
        for n in range(8)
    ]
    keys = []

    def store_one(shot_fields):
        client = store.redis_client(snap_config)
        keys.append(store.store(client, snap_config, shot_fields, 60))

    threads = [threading.Thread(target=store_one, args=(shot,)) for shot in fields]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 8
    assert sorted(keys) == sorted(
        ["image:1700000000"] + [f"image:1700000000.{n}" for n in range(1, 8)]
    )
    stored = {redis_db.hget(key, "image_data") for key in keys}
    assert stored == {shot["image_data"] for shot in fields}
    assert all(redis_db.ttl(key) > 0 for key in keys)


def test_reply_lost_after_exec_stores_the_shot_once(run_snap, redis_db, exec_reply_lost):
    result = run_snap("--json", REDIS_URL=exec_reply_lost.url)

    assert exec_reply_lost.dropped.is_set()
    assert result.returncode == 0, result.stderr
    [key] = redis_db.keys("image:*")
    assert json.loads(result.stdout)["key"] == key.decode()
    assert redis_db.ttl(key) > 0


def test_server_dropping_every_write_is_tried_three_times_and_named(
    run_snap, tmp_path, spool_dir, huge_jpeg
):
    server = start_redis(tmp_path / "limited", "--proto-max-bulk-len", "1mb")
    try:
        before = server.client().info("stats")["total_connections_received"]
        result = run_snap(REDIS_URL=server.url, FAKE_CAMERA_JPEG=str(huge_jpeg))
        connections = server.client().info("stats")["total_connections_received"] - before
    finally:
        server.stop()

    assert result.returncode == 75
    assert "dropped the connection on each of 3 tries to write this 1." in result.stderr
    assert "proto-max-bulk-len 1.0 MB" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert result.stderr.count("\n") == 1
    assert connections <= 1 + 3 + 1  # the watch, three writes, the limits
    assert len(spooled(spool_dir)) == 1


# --- The exit code tells what happened to this run's shot -------------------------------


@pytest.fixture
def stalling_redis(redis_server):
    """The URL of a proxy to the test Redis that passes the first transaction (the run's own
    shot) and then forwards nothing more: Redis hangs while the backlog is delivered."""
    listener = socket.create_server(("127.0.0.1", 0))
    stalled = threading.Event()
    sockets = [listener]

    def pump(source, target, from_client):
        seen = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client and stalled.is_set():
                continue  # swallowed: the client waits for an answer that never comes
            seen = seen[-16:] + data
            target.sendall(data)
            if from_client and b"$4\r\nEXEC\r\n" in seen:
                stalled.set()

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", redis_server.port))
            sockets.extend([client, upstream])
            for args in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=pump, args=args, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
    for sock in sockets:
        sock.close()


def make_backlog(run_snap, spool_dir: Path) -> None:
    result = run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")
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


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_hung_camera_with_a_closed_stream_still_exits_69(run_snap, redis_db, stream):
    result = run_snap(
        RUN_TIMEOUT="3",
        CAPTURE_TIMEOUT="30",
        FAKE_CAMERA_FAULTS="hang-capture,hang-hard",
        **{stream: "closed"},
    )

    assert result.returncode == 69
    if stream == "stdout":
        assert "run timed out after 3 s while capturing; " in result.stderr
    assert result.seconds < 3 + 5
    assert redis_db.keys("*") == []


# --- Nothing written through a file planted in LOCK_DIR or SPOOL_DIR -------------------


LOCK_PATH_REASONS = {
    "fifo": "cannot use lock file {}: not a regular file; remove it",
    "directory": "cannot open lock file {}: Is a directory",
    "symlink": "cannot open lock file {}: a symbolic link",
    "hard link": "cannot use lock file {}: a hard link; remove it",
}


@pytest.mark.parametrize("kind", LOCK_PATH_REASONS)
def test_lock_path_that_is_no_lock_file_exits_73_writing_nothing(
    run_snap, redis_db, camera_dir, tmp_path, kind
):
    lock = camera_dir / "snap-camera0.lock"
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "directory":
        lock.mkdir()
    elif kind == "symlink":
        lock.symlink_to(victim)
    else:
        os.link(victim, lock)

    result = run_snap(timeout=20)

    assert result.returncode == 73
    assert result.stderr == f"snap: error: {LOCK_PATH_REASONS[kind].format(lock)}\n"
    assert victim.read_text() == "keep me\n"
    assert camera_events(camera_dir) == []
    assert redis_db.keys("image:*") == []


def test_lock_file_is_created_writable_by_every_user(run_snap, redis_db, camera_dir):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert (camera_dir / "snap-camera0.lock").stat().st_mode & 0o777 == 0o666


def test_spool_lock_planted_as_a_symlink_is_not_followed(run_snap, spool_dir, tmp_path):
    spool_dir.mkdir()
    target = tmp_path / "created-through-the-link"
    (spool_dir / ".lock").symlink_to(target)

    result = run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    assert result.returncode == 75
    assert "cannot open the spool's lock" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert not target.exists()
