"""How snap's lines look where they land: a terminal or a pipe, the journal, a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def journal_stream(path: Path) -> str:
    """JOURNAL_STREAM as systemd sets it for a service whose stderr is path."""
    path.touch()
    return f"{path.stat().st_dev}:{path.stat().st_ino}"


# A no-lux camera (info), metadata it lacks (warning), no Redis (error): one line of each.
EVERY_LEVEL = {"FAKE_CAMERA_MODEL": "uvc", "CAMERA_METADATA": "SensorTemperature"}


TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}"


def test_lines_in_the_journal_start_with_their_priority_and_no_level_word(
    run_snap, tmp_path, down_redis
):
    journal = tmp_path / "journal"

    result = run_snap(
        stderr_file=journal,
        JOURNAL_STREAM=journal_stream(journal),
        REDIS_URL=down_redis,
        **EVERY_LEVEL,
    )

    assert result.returncode == 75
    [info, warning, error] = result.stderr.splitlines()
    assert info == "<6>snap: this camera gives no Lux reading: lux stored as -1"
    assert warning == "<4>snap: the camera reported no SensorTemperature metadata"
    assert error.startswith("<3>snap: not stored: Redis unreachable at ")


def test_every_line_of_a_traceback_in_the_journal_carries_the_priority(
    run_snap, tmp_path, down_redis
):
    journal = tmp_path / "journal"

    result = run_snap(
        "--verbose",
        stderr_file=journal,
        JOURNAL_STREAM=journal_stream(journal),
        REDIS_URL=down_redis,
    )

    lines = result.stderr.splitlines()
    assert "<3>Traceback (most recent call last):" in lines
    assert [line for line in lines if not re.match(r"<[3-7]>", line)] == []


def test_usage_error_in_the_journal_is_a_priority_3_line(run_snap, tmp_path):
    journal = tmp_path / "journal"

    result = run_snap("--bogus", stderr_file=journal, JOURNAL_STREAM=journal_stream(journal))

    assert result.returncode == 64
    assert re.fullmatch(r"<3>snap: unrecognized arguments: --bogus \(see --help\)\n", result.stderr)


@pytest.mark.parametrize("journal", [False, True], ids=["no journal", "another stream's journal"])
def test_lines_written_to_a_file_start_with_the_time(run_snap, tmp_path, journal, down_redis):
    log = tmp_path / "snap.log"
    other = {"JOURNAL_STREAM": journal_stream(tmp_path / "other")} if journal else {}

    result = run_snap(stderr_file=log, REDIS_URL=down_redis, **EVERY_LEVEL, **other)

    [info, warning, error] = result.stderr.splitlines()
    assert re.fullmatch(rf"{TIMESTAMP} snap: this camera gives no Lux reading: .+", info)
    assert re.fullmatch(rf"{TIMESTAMP} snap: warning: the camera reported no .+", warning)
    assert re.fullmatch(rf"{TIMESTAMP} snap: error: not stored: Redis unreachable .+", error)


def test_lines_to_a_terminal_or_a_pipe_name_their_level(run_snap, down_redis):
    result = run_snap(REDIS_URL=down_redis, **EVERY_LEVEL)

    [info, warning, error] = result.stderr.splitlines()
    assert info.startswith("snap: this camera gives no Lux reading")
    assert warning.startswith("snap: warning: the camera reported no SensorTemperature")
    assert error.startswith("snap: error: not stored: Redis unreachable")
