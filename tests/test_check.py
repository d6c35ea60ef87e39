"""--check: what it reports of the settings, Redis, the camera and the spool, changing nothing."""

from __future__ import annotations


def test_check_passes_with_redis_and_a_camera(run_snap, redis_db, camera_dir):
    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("config: ok")
    assert any(line.startswith("redis: ok") for line in lines)
    assert any(line.startswith("camera 0: imx708") for line in lines)
    assert (
        not (camera_dir / "events.log").exists()
        or "open 0" not in (camera_dir / "events.log").read_text()
    )


def test_check_with_redis_down_exits_75(run_snap, down_redis):
    result = run_snap("--check", REDIS_URL=down_redis)

    assert result.returncode == 75
    assert "redis: FAILED" in result.stdout


def test_check_without_camera_exits_69(run_snap, redis_db):
    result = run_snap("--check", FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 69
    assert "camera: FAILED" in result.stdout
    assert "redis: ok" in result.stdout


def test_check_reports_the_first_failure(run_snap, down_redis):
    result = run_snap("--check", REDIS_URL=down_redis, FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 75


def test_check_reports_the_backlog(run_snap, spool_dir, down_redis):
    run_snap(REDIS_URL=down_redis)

    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    assert f"spool: ok ({spool_dir}, 1 shot, " in result.stdout


def test_check_shows_files_killed_runs_left(run_snap, spool_dir):
    spool_dir.mkdir()
    (spool_dir / ".1700000000-1-abcdef.jpg.partial").write_bytes(bytes(2000))

    result = run_snap("--check")

    assert result.returncode == 0, result.stdout
    assert "0 shots, 0 kB waiting; 1 unfinished file(s) of killed runs, 2 kB" in result.stdout


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
