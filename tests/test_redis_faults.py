"""Redis that is down, silent, full, locked or dropping writes: a bounded wait, one clean
line, 75 or 77, and the shot kept in the spool."""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
import subprocess
import threading

import redis
from helpers import PASSWORD, free_port, running_redis, spooled


def test_redis_not_listening_exits_75_at_once_keeping_the_shot(
    run_snap, spool_dir, tmp_path, down_redis
):
    output = tmp_path / "shot.jpg"

    result = run_snap("--output", str(output), REDIS_URL=down_redis)

    assert result.returncode == 75
    assert result.stderr.count("\n") == 1
    assert "Redis unreachable" in result.stderr
    assert re.fullmatch(
        r"snap: error: not stored: Redis unreachable at redis://127\.0\.0\.1:\d+ \(.+\);"
        r" kept in spool \(1 shot, \d+ kB\);"
        r" check that Redis runs: redis-cli -u redis://127\.0\.0\.1:\d+ ping\n",
        result.stderr,
    )
    assert result.seconds < 5
    [jpeg] = spooled(spool_dir)
    assert jpeg.read_bytes() == output.read_bytes()


def test_unreachable_redis_line_ends_with_a_ping_that_answers_once_redis_runs(run_snap, tmp_path):
    port = free_port()
    result = run_snap(REDIS_URL=f"redis://127.0.0.1:{port}")
    command = re.search(r"; check that Redis runs: (redis-cli .+ ping)\n\Z", result.stderr)
    with running_redis(tmp_path / "late", port=port):
        answer = subprocess.run(shlex.split(command.group(1)), capture_output=True, text=True)

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


def test_silent_redis_exits_75_within_the_timeout_keeping_the_shot(
    run_snap, silent_redis, spool_dir
):
    result = run_snap(REDIS_URL=silent_redis, REDIS_TIMEOUT="1")

    assert result.returncode == 75
    assert "timeout after 1 s" in result.stderr and "kept in spool" in result.stderr
    assert result.seconds < 6
    assert len(spooled(spool_dir)) == 1


def test_full_redis_exits_75_with_a_clean_out_of_memory_line_keeping_the_shot(
    run_snap, full_redis, spool_dir
):
    result = run_snap(REDIS_URL=full_redis.url)

    assert result.returncode == 75
    assert "out of memory" in result.stderr
    assert re.fullmatch(
        r"snap: error: not stored: Redis refused the write: out of memory \(maxmemory reached\);"
        r" kept in spool \(1 shot, \d+ kB\)\n",
        result.stderr,
    )
    assert full_redis.client().keys("image:*") == []
    assert len(spooled(spool_dir)) == 1


def test_full_redis_message_carries_no_image_bytes(run_snap, full_redis):
    result = run_snap("--verbose", REDIS_URL=full_redis.url)

    assert result.returncode == 75
    assert "\\xff\\xd8" not in result.stderr
    assert "JFIF" not in result.stderr
    assert len(result.stderr) < 20_000


def test_wrong_password_exits_77_without_showing_it_keeping_the_shot(
    run_snap, locked_redis, spool_dir
):
    url = f"redis://default:wrong-{PASSWORD}@127.0.0.1:{locked_redis.port}"

    result = run_snap(REDIS_URL=url)

    assert result.returncode == 77
    assert result.stderr.count("\n") == 1
    assert PASSWORD not in result.stderr + result.stdout
    assert "****" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert len(spooled(spool_dir)) == 1


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


def test_unix_socket_url_stores_the_shot(run_snap, tmp_path):
    socket_path = tmp_path / "redis.sock"
    with running_redis(tmp_path / "unix", "--unixsocket", str(socket_path)) as server:
        result = run_snap(REDIS_URL=f"unix://{socket_path}")

        assert result.returncode == 0, result.stderr
        assert server.client().keys("image:*")


def test_read_only_replica_exits_75(run_snap, tmp_path):
    with running_redis(
        tmp_path / "replica", "--replicaof", "127.0.0.1", str(free_port())
    ) as server:
        result = run_snap(REDIS_URL=server.url)

    assert result.returncode == 75
    assert "read-only replica" in result.stderr


def test_server_dropping_every_write_is_tried_three_times_and_named(
    run_snap, tmp_path, spool_dir, huge_jpeg
):
    with running_redis(tmp_path / "limited", "--proto-max-bulk-len", "1mb") as server:
        before = server.client().info("stats")["total_connections_received"]
        result = run_snap(REDIS_URL=server.url, FAKE_CAMERA_JPEG=str(huge_jpeg))
        connections = server.client().info("stats")["total_connections_received"] - before

    assert result.returncode == 75
    assert "dropped the connection on each of 3 tries to write this 1." in result.stderr
    assert "proto-max-bulk-len 1.0 MB" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert result.stderr.count("\n") == 1
    assert connections <= 1 + 3 + 1  # the watch, three writes, the limits
    assert len(spooled(spool_dir)) == 1
