"""Redis that is down, silent, full or locked: a bounded wait, one clean line, 75 or 77."""

import contextlib
import re
import shlex
import socket
import subprocess
import threading

import pytest
import redis
from helpers import free_port, start_redis

from snapcam.store import ping_command

PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def locked_redis(tmp_path):
    server = start_redis(tmp_path / "locked", "--requirepass", PASSWORD)
    yield server
    server.stop()


def test_redis_not_listening_exits_75_at_once(run_snap):
    result = run_snap(REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    assert result.returncode == 75
    assert result.stderr.count("\n") == 1
    assert "Redis unreachable" in result.stderr
    assert result.seconds < 5


def test_unreachable_redis_line_ends_with_a_ping_that_answers_once_redis_runs(run_snap, tmp_path):
    port = free_port()
    result = run_snap(REDIS_URL=f"redis://127.0.0.1:{port}")
    command = re.search(r"; check that Redis runs: (redis-cli .+ ping)\n\Z", result.stderr)
    server = start_redis(tmp_path / "late", port=port)
    try:
        answer = subprocess.run(shlex.split(command.group(1)), capture_output=True, text=True)
    finally:
        server.stop()

    assert answer.stdout == "PONG\n"


def test_unreachable_redis_ping_shows_no_password(run_snap):
    port = free_port()

    result = run_snap("--check", REDIS_URL=f"redis://garden:{PASSWORD}@127.0.0.1:{port}")

    assert f"; check that Redis runs: redis-cli -u redis://garden:****@127.0.0.1:{port} ping\n" in (
        result.stdout
    )
    assert PASSWORD not in result.stdout + result.stderr


def test_ping_for_a_unix_socket_answers(tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = start_redis(tmp_path / "unix", "--unixsocket", str(socket_path))
    try:
        command = ping_command(f"unix://{socket_path}")
        answer = subprocess.run(shlex.split(command), capture_output=True, text=True)
    finally:
        server.stop()

    assert answer.stdout == "PONG\n"


def test_redis_closing_every_connection_is_tried_once(run_snap, spool_dir):
    accepted = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def hang_up():
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    accepted.append(connection)
                    connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        result = run_snap(REDIS_URL=f"redis://127.0.0.1:{listener.getsockname()[1]}")

    assert result.returncode == 75
    assert "kept in spool (1 shot" in result.stderr
    assert len(accepted) == 1  # no retries: the next run tries again


def test_silent_redis_exits_75_within_the_timeout(run_snap, silent_redis):
    result = run_snap(REDIS_URL=silent_redis, REDIS_TIMEOUT="1")

    assert result.returncode == 75
    assert "timeout after 1 s" in result.stderr
    assert result.seconds < 6


def test_full_redis_exits_75_with_a_clean_out_of_memory_line(run_snap, full_redis):
    result = run_snap(REDIS_URL=full_redis.url)

    assert result.returncode == 75
    assert re.fullmatch(
        r"snap: error: not stored: Redis refused the write: out of memory \(maxmemory reached\);"
        r" kept in spool \(1 shot, \d+ kB\)\n",
        result.stderr,
    )
    assert full_redis.client().keys("image:*") == []


def test_full_redis_message_carries_no_image_bytes(run_snap, full_redis):
    result = run_snap("--verbose", REDIS_URL=full_redis.url)

    assert result.returncode == 75
    assert "\\xff\\xd8" not in result.stderr
    assert "JFIF" not in result.stderr
    assert len(result.stderr) < 20_000


def test_wrong_password_exits_77_without_showing_it(run_snap, locked_redis):
    url = f"redis://default:wrong-{PASSWORD}@127.0.0.1:{locked_redis.port}"

    result = run_snap(REDIS_URL=url)

    assert result.returncode == 77
    assert result.stderr.count("\n") == 1
    assert PASSWORD not in result.stderr + result.stdout
    assert "****" in result.stderr


def test_missing_password_exits_77(run_snap, locked_redis):
    result = run_snap(REDIS_URL=locked_redis.url)

    assert result.returncode == 77
    assert "Redis refused access" in result.stderr


def test_right_password_stores_the_shot(run_snap, locked_redis):
    url = f"redis://default:{PASSWORD}@127.0.0.1:{locked_redis.port}"

    result = run_snap(REDIS_URL=url)

    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    client = redis.Redis(port=locked_redis.port, password=PASSWORD)
    assert client.keys("image:*")


def test_password_never_appears_in_json_or_check(run_snap, locked_redis):
    url = f"redis://default:{PASSWORD}@127.0.0.1:{locked_redis.port}"

    shot = run_snap("--json", "--verbose", REDIS_URL=url)
    check = run_snap("--check", "--verbose", REDIS_URL=url)

    assert shot.returncode == 0 and check.returncode == 0
    for text in (shot.stdout, shot.stderr, check.stdout, check.stderr):
        assert PASSWORD not in text


def test_unix_socket_url_stores_the_shot(run_snap, tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = start_redis(tmp_path / "unix", "--unixsocket", str(socket_path))
    try:
        result = run_snap(REDIS_URL=f"unix://{socket_path}")

        assert result.returncode == 0, result.stderr
        assert server.client().keys("image:*")
    finally:
        server.stop()


def test_read_only_replica_exits_75(run_snap, tmp_path):
    server = start_redis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(free_port()))
    try:
        result = run_snap(REDIS_URL=server.url)
    finally:
        server.stop()

    assert result.returncode == 75
    assert "read-only replica" in result.stderr


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


def test_check_with_redis_down_exits_75(run_snap):
    result = run_snap("--check", REDIS_URL=f"redis://127.0.0.1:{free_port()}")

    assert result.returncode == 75
    assert "redis: FAILED" in result.stdout


def test_check_without_camera_exits_69(run_snap, redis_db):
    result = run_snap("--check", FAKE_CAMERA_FAULTS="absent")

    assert result.returncode == 69
    assert "camera: FAILED" in result.stdout
    assert "redis: ok" in result.stdout


def test_check_reports_the_first_failure(run_snap):
    result = run_snap(
        "--check", REDIS_URL=f"redis://127.0.0.1:{free_port()}", FAKE_CAMERA_FAULTS="absent"
    )

    assert result.returncode == 75
