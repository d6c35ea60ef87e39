"""Stop signals: SIGTERM, SIGHUP and Ctrl-C end a run with 128 + the signal, the camera
closed and the shot kept."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from helpers import camera_events, spooled, wait_for_event


def stopped_while_capturing(snap_process, camera_dir: Path, signal_number: int):
    """A run sent the signal while its capture hangs, once it has ended."""
    process = snap_process(CAPTURE_TIMEOUT="30", FAKE_CAMERA_FAULTS="hang-capture")
    wait_for_event(camera_dir, "capture_file")
    process.send_signal(signal_number)
    process.wait(timeout=10)
    return process


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


def test_stop_signal_once_the_jpeg_is_written_keeps_the_shot(snap_process, spool_dir, camera_dir):
    process = snap_process(FAKE_CAMERA_FAULTS="slow-return")
    wait_for_event(camera_dir, "jpeg written")  # capture_file() has not returned yet

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)

    assert process.returncode == 143
    assert "stopped by SIGTERM; kept in spool (1 shot" in process.stderr.read()
    assert len(spooled(spool_dir)) == 1


def test_ctrl_c_during_capture_exits_130(snap_process, camera_dir):
    process = snap_process(CAPTURE_TIMEOUT="30", FAKE_CAMERA_FAULTS="hang-capture")
    wait_for_event(camera_dir, "capture_file")

    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)

    assert process.returncode == 130
    assert camera_events(camera_dir)[-1] == "close"


def test_stop_signal_during_a_save_waits_for_the_shot_to_be_kept(
    snap_process, spool_dir, spool_held, down_redis
):
    process = snap_process(REDIS_URL=down_redis)
    for line in process.stderr:
        if "for another run to release the spool" in line:
            break

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    assert process.returncode == 143
    assert "stopped by SIGTERM; kept in spool (1 shot" in process.stderr.read()
    assert len(spooled(spool_dir)) == 1


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: whoever writes to it waits until it is read."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"." * 4096)
    except BlockingIOError:
        os.set_blocking(write_end, True)
    return read_end, write_end


def wait_until_blocked_writing_to_a_pipe(pid: int) -> None:
    wchan = Path(f"/proc/{pid}/wchan")
    while not wchan.read_text().endswith("pipe_write"):
        os.sched_yield()


def test_stop_signal_while_the_last_line_is_written_keeps_the_line_and_exits_143(snap_process):
    read_end, write_end = full_pipe()
    process = snap_process(IMAGE_EXPIRY="soon", stderr=write_end)
    os.close(write_end)
    wait_until_blocked_writing_to_a_pipe(process.pid)

    process.send_signal(signal.SIGTERM)
    with open(read_end, "rb") as pipe:
        written = pipe.read().lstrip(b".").decode()
    process.wait(timeout=10)

    assert process.returncode == 143
    assert written.startswith("snap: error: IMAGE_EXPIRY='soon' is invalid: ")
    assert written.count("\n") == 1 and written.endswith("\n")
