"""snap.py ends with os._exit() once main() has returned: what the interpreter's teardown
would still have done that matters is done first, and a run's output and files are whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, spooled, spooled_fields

# A process that ends with snapcam.ending.end(3) after `body`.
CHILD = """\
import sys
sys.path.insert(0, {root!r})
from snapcam.ending import end
{body}
end(3)
"""


def run_child(body: str, tmp_path: Path, **streams) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), body=textwrap.dedent(body)))
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams}
    return subprocess.run(
        [sys.executable, str(script)],
        env={"PATH": os.environ["PATH"]},  # no PYTHONUNBUFFERED: the streams buffer
        stdin=subprocess.DEVNULL,
        timeout=30,
        text=True,
        **options,
    )


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_end_writes_what_standard_output_and_error_still_buffer(tmp_path, into):
    body = """\
        sys.stdout.write("out " * 1000 + "last")
        sys.stderr.write("no newline yet")
    """
    if into == "pipe":
        child = run_child(body, tmp_path)
        out, err = child.stdout, child.stderr
    else:
        with open(tmp_path / "out", "w") as out_file, open(tmp_path / "err", "w") as err_file:
            child = run_child(body, tmp_path, stdout=out_file, stderr=err_file)
        out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()

    assert child.returncode == 3
    assert out == "out " * 1000 + "last"
    assert err == "no newline yet"


def test_end_keeps_its_exit_code_when_standard_output_is_full(tmp_path):
    child = run_child(
        """\
        import os
        sys.stdout.write("lost")
        os.dup2(os.open("/dev/full", os.O_WRONLY), 1)  # the disk filled up since
        """,
        tmp_path,
    )

    assert child.returncode == 3
    assert child.stderr == ""


def test_end_runs_the_exit_handlers(tmp_path):
    closed = tmp_path / "closed"
    child = run_child(
        f"""\
        import atexit, pathlib
        atexit.register(pathlib.Path({str(closed)!r}).write_text, "camera closed")
        """,
        tmp_path,
    )

    assert child.returncode == 3
    assert closed.read_text() == "camera closed"


def test_end_waits_for_a_thread_that_is_no_daemon(tmp_path):
    written = tmp_path / "written"
    child = run_child(
        f"""\
        import pathlib, threading, time
        def write():
            time.sleep(0.3)
            pathlib.Path({str(written)!r}).write_text("whole")
        threading.Thread(target=write).start()
        """,
        tmp_path,
    )

    assert child.returncode == 3
    assert written.read_text() == "whole"


def test_end_skips_the_finalisation_of_modules_and_objects(tmp_path):
    child = run_child(
        """\
        import os
        class Finalised:
            def __del__(self):
                os.write(1, b"finalised")
        kept = Finalised()
        """,
        tmp_path,
    )

    assert child.returncode == 3
    assert child.stdout == ""


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_stored_runs_whole_report_reaches_a_pipe_or_a_file(snap_process, redis_db, tmp_path, into):
    if into == "pipe":
        process = snap_process("--json")
        out, _ = process.communicate(timeout=60)
    else:
        with open(tmp_path / "report", "w") as report_file:
            process = snap_process("--json", stdout=report_file)
            process.communicate(timeout=60)
        out = (tmp_path / "report").read_text()

    assert process.returncode == 0
    assert out.count("\n") == 1 and out.endswith("}\n")
    report = json.loads(out)
    assert redis_db.hget(report["key"], "image_data")[:2] == b"\xff\xd8"


def test_spooled_shot_and_status_file_are_whole_when_the_run_ends(
    run_snap, spool_dir, big_jpeg, down_redis
):
    result = run_snap(REDIS_URL=down_redis, CAMERA_NAME="garden", FAKE_CAMERA_JPEG=str(big_jpeg))

    assert result.returncode == 75
    [jpeg] = spooled(spool_dir)
    assert jpeg.read_bytes() == big_jpeg.read_bytes()
    assert spooled_fields(jpeg)["mime_type"] == "image/jpeg"
    (state,) = spool_dir.glob(".status-*")
    document = json.loads(state.read_text())
    assert (document["camera"], document["fields"]["last_exit"]) == ("garden", 75)
    assert list(spool_dir.glob(".status-*.tmp")) == []
