"""The .env file: the one beside snap.py or --env-file's, the environment winning over it,
and one that cannot be read or holds what no setting takes."""

from __future__ import annotations

import os
import re

import pytest
from helpers import camera_events


def test_env_file_next_to_snap_is_read(run_snap, snap_app, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromfile\n")

    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("fromfile:*")


def test_environment_wins_over_env_file(run_snap, snap_app, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromfile\n")

    result = run_snap(IMAGE_KEY_PREFIX="fromenv")

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("fromenv:*")
    assert not redis_db.keys("fromfile:*")


def test_env_file_option_is_read_instead_of_the_default(run_snap, snap_app, tmp_path, redis_db):
    (snap_app.parent / ".env").write_text("IMAGE_KEY_PREFIX=fromdefault\n")
    other = tmp_path / "garden.env"
    other.write_text("IMAGE_KEY_PREFIX=garden\n")

    result = run_snap("--env-file", str(other))

    assert result.returncode == 0, result.stderr
    assert redis_db.keys("garden:*")
    assert not redis_db.keys("fromdefault:*")


def test_invalid_value_in_env_file_exits_78(run_snap, snap_app):
    (snap_app.parent / ".env").write_text("JPEG_QUALITY=100\n")

    result = run_snap()

    assert result.returncode == 78
    assert "JPEG_QUALITY='100'" in result.stderr


def test_value_holding_a_nul_in_the_env_file_exits_78(run_snap, snap_app, camera_dir):
    (snap_app.parent / ".env").write_text("CAMERA_NAME=garden\0shed\n")

    result = run_snap()

    assert result.returncode == 78
    assert result.stderr == (
        "snap: error: CAMERA_NAME='garden\\x00shed' is invalid: it holds a NUL character\n"
    )
    assert camera_events(camera_dir) == []


def test_env_file_that_is_not_utf8_exits_78_naming_the_line(run_snap, snap_app, camera_dir):
    (snap_app.parent / ".env").write_bytes(b"JPEG_QUALITY=80\nCAMERA_NAME=caf\xe9\n")

    result = run_snap()

    assert result.returncode == 78
    assert result.stderr == (
        f"snap: error: {snap_app.parent / '.env'} is not UTF-8 text: byte 0xe9 on line 2\n"
    )
    assert camera_events(camera_dir) == []


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling symlink"])
def test_env_file_that_cannot_be_read_exits_78_at_once(run_snap, snap_app, camera_dir, kind):
    path = snap_app.parent / ".env"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer
    else:
        path.symlink_to(snap_app.parent / "missing.env")

    result = run_snap(timeout=20)

    assert result.returncode == 78
    assert re.fullmatch(rf"snap: error: cannot read {re.escape(str(path))}: .+\n", result.stderr)
    assert camera_events(camera_dir) == []


def test_env_file_option_naming_a_directory_exits_78(run_snap, tmp_path):
    result = run_snap("--env-file", str(tmp_path))

    assert result.returncode == 78
    assert f"cannot read {tmp_path}: Is a directory" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_env_file_exits_78(run_snap, snap_app):
    path = snap_app.parent / ".env"
    path.write_text("JPEG_QUALITY=80\n")
    path.chmod(0)

    result = run_snap()

    assert result.returncode == 78
    assert f"cannot read {path}: Permission denied" in result.stderr
