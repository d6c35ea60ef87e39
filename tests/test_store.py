"""snapcam.store in-process, against the real test Redis: the hash, its key and its TTL, and
how Redis's failures are told."""

from __future__ import annotations

import shlex
import subprocess
import threading

import pytest
from helpers import running_redis

from snapcam import store
from snapcam.config import Config, load_config
from snapcam.errors import ShotRefused, TemporaryFailure
from snapcam.store import ping_command


@pytest.fixture
def config(make_config, redis_server):
    return make_config(REDIS_URL=redis_server.url, CAMERA_NAME="garden")


def fields(timestamp: int = 1700000000) -> dict:
    return {"image_data": b"\xff\xd8jpeg", "timestamp": timestamp, "mime_type": "image/jpeg"}


def test_shot_is_one_hash_with_its_ttl(config, redis_db):
    shot = fields()

    key = store.store(store.redis_client(config), config, shot, 60)

    assert key == "image:1700000000"
    assert redis_db.hgetall(key) == {
        b"image_data": b"\xff\xd8jpeg",
        b"timestamp": b"1700000000",
        b"mime_type": b"image/jpeg",
        b"shot_id": shot["shot_id"].encode(),
    }
    assert 0 < redis_db.ttl(key) <= 60


def test_taken_key_is_never_overwritten(config, redis_db):
    redis_db.hset("image:1700000000", "image_data", b"first")

    key = store.store(store.redis_client(config), config, fields(), 60)

    assert key != "image:1700000000"
    assert redis_db.hget("image:1700000000", "image_data") == b"first"


def test_unreachable_redis_is_a_temporary_failure_naming_it(make_config, down_redis):
    config = make_config(REDIS_URL=down_redis, REDIS_TIMEOUT="1")

    with pytest.raises(TemporaryFailure, match="Redis unreachable at redis://127.0.0.1:"):
        store.store(store.redis_client(config), config, fields(), 60)


def test_shot_redis_already_has_is_not_stored_again(config, redis_db):
    shot = fields()
    client = store.redis_client(config)

    first = store.store(client, config, shot, 60)
    again = store.store(client, config, dict(shot), 60)

    assert again == first
    assert redis_db.keys("image:*") == [first.encode()]


def test_out_of_memory_refuses_the_shot_not_the_server(make_config, full_redis):
    config = make_config(REDIS_URL=full_redis.url)

    with pytest.raises(ShotRefused, match="out of memory"):
        store.store(store.redis_client(config), config, fields(), 60)


@pytest.fixture
def snap_config(redis_server, tmp_path, monkeypatch) -> Config:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("SPOOL_DIR", str(tmp_path / "spool"))
    return load_config(None)


def test_concurrent_shots_in_one_second_each_land_whole(snap_config, redis_db):
    fields = [
        {"image_data": bytes([n]) * 100_000, "timestamp": 1700000000, "mime_type": "image/jpeg"}
        for n in range(8)
    ]
    keys = []

    def store_one(shot_fields):
        client = store.redis_client(snap_config)
        keys.append(store.store(client, snap_config, shot_fields, 60))

    threads = [threading.Thread(target=store_one, args=(shot,)) for shot in fields]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 8
    assert sorted(keys) == sorted(
        ["image:1700000000"] + [f"image:1700000000.{n}" for n in range(1, 8)]
    )
    stored = {redis_db.hget(key, "image_data") for key in keys}
    assert stored == {shot["image_data"] for shot in fields}
    assert all(redis_db.ttl(key) > 0 for key in keys)


def test_ping_for_a_unix_socket_answers(tmp_path):
    socket_path = tmp_path / "redis.sock"
    with running_redis(tmp_path / "unix", "--unixsocket", str(socket_path)):
        command = ping_command(f"unix://{socket_path}")
        answer = subprocess.run(shlex.split(command), capture_output=True, text=True)

    assert answer.stdout == "PONG\n"
