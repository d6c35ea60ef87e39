"""The store in-process, against the real test Redis: the hash, its key and its TTL."""

from __future__ import annotations

import re

import pytest

from snapcam import store
from snapcam.camera import Shot
from snapcam.errors import ShotRefused, TemporaryFailure


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


def test_shot_fields_hold_the_contract_and_the_metadata_asked_for(make_config):
    config = make_config(CAMERA_NAME="garden", CAMERA_METADATA="ExposureTime,ColourGains")
    shot = Shot(
        jpeg=memoryview(b"\xff\xd8"),
        metadata={"Lux": 41.7, "ExposureTime": 1000, "ColourGains": (1.5, 2.0)},
        timestamp=1700000000,
    )

    fields = store.shot_fields(shot, config)

    assert re.fullmatch(r"[0-9a-f]{16}", fields.pop("shot_id"))
    assert fields == {
        "image_data": shot.jpeg,
        "timestamp": 1700000000,
        "mime_type": "image/jpeg",
        "camera": "garden",
        "lux": 41,
        "exposure_time": 1000,
        "colour_gains": "1.5,2.0",
    }


def test_unreachable_redis_is_a_temporary_failure_naming_it(make_config):
    from helpers import free_port

    config = make_config(REDIS_URL=f"redis://127.0.0.1:{free_port()}", REDIS_TIMEOUT="1")

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
