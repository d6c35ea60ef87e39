"""--status over a fleet: one line or JSON per camera, and an exit code a watcher acts on."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import time

import pytest
from helpers import STATUS_FIELDS, camera_events, start_cluster


def test_status_exits_0_when_every_camera_stored_a_shot_within_stale(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed")

    result = shoot("--status", "--stale", "600")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.partition(",")[0] for line in lines] == ["garden: ok", "shed: ok"]
    assert all("exit 0, 0 failures, 0 spooled" in line for line in lines)


def test_status_exits_1_when_a_camera_stored_no_shot_within_stale(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed")
    redis_db.hset("snap:camera:shed", "last_stored", int(time.time()) - 1000)

    result = shoot("--status", "--stale", "600")

    assert result.returncode == 1
    assert result.stdout.splitlines()[1].startswith("shed: STALE, last shot 16 min ago")


def test_status_exits_1_for_a_camera_that_never_stored_a_shot(shoot, redis_db):
    shoot()
    shoot(CAMERA_NAME="shed", FAKE_CAMERA_FAULTS="absent")

    result = shoot("--status")

    assert result.returncode == 1
    assert re.match(
        r"shed: STALE, no shot stored yet, exit 69, 1 failure, 0 spooled; "
        r"last error \d+ s ago: camera 0 not available: no camera detected",
        result.stdout.splitlines()[1],
    )


def test_status_whose_output_cannot_be_written_keeps_its_exit_code(shoot, redis_db):
    shoot(CAMERA_NAME="shed", FAKE_CAMERA_FAULTS="absent")
    with open("/dev/full", "w") as full:  # unbuffered, as on a terminal: written at once
        result = shoot("--status", stdout=full, PYTHONUNBUFFERED="1")

    assert result.returncode == 1
    assert result.stderr.startswith("snap: warning: cannot write to standard output: ")


def test_status_exits_1_when_no_camera_has_a_status(shoot, redis_db):
    result = shoot("--status")

    assert result.returncode == 1
    assert result.stdout.startswith("no camera status under snap:camera:* at redis://")


def test_status_json_is_strict_json_of_every_camera(shoot, redis_db):
    shoot()

    result = shoot("--status", "--json", "--stale", "60")

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    report = json.loads(result.stdout, parse_constant=no_constants)
    assert result.returncode == 0
    assert (report["ok"], report["stale_seconds"]) == (True, 60)
    (garden,) = report["cameras"]
    assert STATUS_FIELDS < set(garden)
    assert (garden["camera"], garden["state"], garden["failures"]) == ("garden", "ok", 0)
    assert 0 <= garden["age"] <= 5


def test_status_lists_no_shot_and_no_other_hash(shoot, redis_db):
    shoot()
    redis_db.set("snap:camera:notes", "a string, not a hash")

    result = shoot("--status", "--json")

    assert [camera["camera"] for camera in json.loads(result.stdout)["cameras"]] == ["garden"]


def test_status_with_redis_down_exits_75(shoot, down_redis):
    result = shoot("--status", REDIS_URL=down_redis)

    assert result.returncode == 75
    assert "Redis unreachable" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stale", "60"], "--stale goes with --status"),
        (["--status", "--check"], "not allowed with"),
        (["--status", "--dry-run"], "not allowed with"),
        (["--status", "--install-timer"], "not allowed with"),
        (["--status", "--stale", "0"], "expected a number of seconds greater than 0"),
        (["--status", "--stale", "soon"], "expected a number of seconds greater than 0"),
    ],
)
def test_status_usage_errors_exit_64(shoot, camera_dir, args, message):
    result = shoot(*args)

    assert result.returncode == 64
    assert message in result.stderr
    assert camera_events(camera_dir) == []


def test_status_help_names_the_options(shoot):
    help_text = shoot("--help").stdout

    assert "--status" in help_text
    assert "--stale SECONDS" in help_text


def test_status_prefix_under_image_exits_78_in_one_line(shoot, redis_db):
    result = shoot("--status", STATUS_PREFIX="image:status", IMAGE_KEY_PREFIX="garden")

    assert result.returncode == 78
    assert result.stderr.startswith("snap: error: STATUS_PREFIX='image:status' is invalid: ")
    assert result.stderr.count("\n") == 1


class Relay:
    """A TCP relay to the test Redis that delays what the client sends by `latency` seconds
    (each chunk handed on at its own time, as a network does), and, with stall_after_read,
    forwards nothing more once a SCAN follows the first HGETALL: Redis hangs mid-way."""

    def __init__(self, port: int, latency: float = 0.0, stall_after_read: bool = False):
        self.port, self.latency, self.stall_after_read = port, latency, stall_after_read
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stalled = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}"

    def accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.port))
                chunks: queue.Queue = queue.Queue()
                for target in (self.receive, self.send):
                    threading.Thread(
                        target=target, args=(client, upstream, chunks), daemon=True
                    ).start()
                threading.Thread(target=self.answer, args=(upstream, client), daemon=True).start()

    def receive(self, client, upstream, chunks) -> None:
        read = False
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                read = read or b"HGETALL" in data
                if self.stall_after_read and read and b"SCAN" in data:
                    self.stalled.set()
                if not self.stalled.is_set():
                    chunks.put((time.monotonic() + self.latency, data))
        chunks.put((0, b""))

    def send(self, client, upstream, chunks) -> None:
        with contextlib.suppress(OSError):
            while True:
                due, data = chunks.get()
                if not data:
                    return
                time.sleep(max(due - time.monotonic(), 0))  # the network's latency
                upstream.sendall(data)

    def answer(self, upstream, client) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relay(redis_server):
    relays = []

    def start(**options) -> Relay:
        relays.append(Relay(redis_server.port, **options))
        return relays[-1]

    yield start
    for made in relays:
        made.close()


def add_cameras(redis_db, count: int) -> None:
    now = int(time.time())
    with redis_db.pipeline(transaction=False) as pipe:
        for number in range(count):
            pipe.hset(f"snap:camera:pi{number:04}", mapping={"last_stored": now, "last_run": now})
        pipe.execute()


def test_status_of_60_cameras_behind_latency_is_read_within_run_timeout(run_snap, redis_db, relay):
    add_cameras(redis_db, 60)
    slow = relay(latency=0.1)

    result = run_snap("--status", REDIS_URL=slow.url, RUN_TIMEOUT="3")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 60


def test_status_prints_what_was_read_when_run_timeout_comes(run_snap, redis_db, relay):
    add_cameras(redis_db, 1200)
    hanging = relay(stall_after_read=True)

    result = run_snap("--status", REDIS_URL=hanging.url, RUN_TIMEOUT="5", REDIS_TIMEOUT="30")

    assert result.returncode == 75
    lines = result.stdout.splitlines()
    assert 0 < len(lines) < 1200
    assert all(re.match(r"pi\d{4}: ok, ", line) for line in lines)
    assert re.fullmatch(
        rf"snap: error: --status read {len(lines)} camera status\(es\) under snap:camera:\* "
        r"within RUN_TIMEOUT \(5 s\); the others are not listed; check that Redis answers: .*\n",
        result.stderr,
    )


def test_status_prints_what_was_read_when_redis_stops_answering_mid_way(run_snap, redis_db, relay):
    add_cameras(redis_db, 1200)
    hanging = relay(stall_after_read=True)

    result = run_snap("--status", REDIS_URL=hanging.url, RUN_TIMEOUT="30", REDIS_TIMEOUT="1")

    assert result.returncode == 75
    lines = result.stdout.splitlines()
    assert 0 < len(lines) < 1200
    assert all(re.match(r"pi\d{4}: ok, ", line) for line in lines)
    assert re.fullmatch(
        r"snap: error: Redis unreachable at redis://127\.0\.0\.1:\d+ \(timeout after 1 s\); "
        r"check that Redis runs: redis-cli -u redis://127\.0\.0\.1:\d+ ping\n",
        result.stderr,
    )


def test_status_lists_a_camera_of_a_name_not_utf8_as_unreadable(shoot, redis_db):
    shoot()
    redis_db.hset(b"snap:camera:shed\xff", "last_run", 1)

    result = shoot("--status")

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        result.stdout.splitlines()[0],
        "shed\\xff: UNREADABLE, its name is not UTF-8",
    ]


def test_status_lists_a_camera_with_a_field_name_not_utf8_as_unreadable(shoot, redis_db):
    shoot()
    redis_db.hset("snap:camera:garden", b"last\xffrun", 1)

    result = shoot("--status")

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == "garden: UNREADABLE, its field name is not UTF-8\n"


def test_status_from_a_clock_ahead_is_flagged_and_exits_1(shoot, redis_db):
    shoot()
    redis_db.hset("snap:camera:garden", "last_stored", int(time.time()) + 82800 + 1800)

    result = shoot("--status")

    assert result.returncode == 1
    assert result.stdout.startswith(
        "garden: AHEAD, its clock is ahead of this machine's, last shot 23 h ahead"
    )


def test_status_text_escapes_control_characters(shoot, redis_db):
    shoot()
    redis_db.hset(
        "snap:camera:garden", mapping={"last_error": "x\nshed: ok\r\x1b[2J", "last_failure": 1}
    )

    result = shoot("--status")

    (line,) = result.stdout.splitlines()
    assert line.endswith(": x\\nshed: ok\\r\\x1b[2J")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield made
    made.stop()


def test_status_on_a_cluster_node_without_redis_cluster_is_refused(run_snap, cluster):
    result = run_snap("--status", REDIS_URL=cluster.url)

    assert result.returncode == 78
    assert result.stderr.endswith(
        "is a Redis Cluster node: it holds only some cameras' "
        "statuses; set REDIS_CLUSTER=true to read them from every node\n"
    )


def test_status_with_redis_cluster_lists_the_cameras_of_every_node(run_snap, cluster):
    client = cluster.client()
    names = [f"pi{number}" for number in range(20)]  # their keys fall on every node
    for name in names:
        client.hset(f"snap:camera:{name}", "last_stored", int(time.time()))

    result = run_snap("--status", "--json", REDIS_URL=cluster.url, REDIS_CLUSTER="true")

    listed = [camera["camera"] for camera in json.loads(result.stdout)["cameras"]]
    assert listed == sorted(names)
