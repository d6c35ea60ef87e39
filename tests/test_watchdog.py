"""No run hangs: RUN_TIMEOUT ends a run stuck in the camera, Redis or the output, the shot
kept where there is one."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from helpers import camera_events, spooled, wait_for_event


def processes_mentioning(text: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if text in line and "ps -eo" not in line]


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
