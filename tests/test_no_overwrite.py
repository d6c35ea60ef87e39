"""No shot overwrites another: a taken second gets a key of its own, a lost reply stores
the shot once."""

from __future__ import annotations

import json
import time


def test_shot_in_an_already_used_second_gets_its_own_key(run_snap, redis_db):
    now = int(time.time())
    for second in range(now - 1, now + 30):
        redis_db.hset(f"image:{second}", mapping={"timestamp": second, "mime_type": "other"})

    result = run_snap("--json")

    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)["key"]
    timestamp = json.loads(result.stdout)["timestamp"]
    assert key == f"image:{timestamp}.1"
    assert redis_db.hget(f"image:{timestamp}", "mime_type") == b"other"
    assert b"image_data" not in redis_db.hgetall(f"image:{timestamp}")
    assert int(redis_db.hget(key, "timestamp")) == timestamp


def test_reply_lost_after_exec_stores_the_shot_once(run_snap, redis_db, exec_reply_lost):
    result = run_snap("--json", REDIS_URL=exec_reply_lost.url)

    assert exec_reply_lost.dropped.is_set()
    assert result.returncode == 0, result.stderr
    [key] = redis_db.keys("image:*")
    assert json.loads(result.stdout)["key"] == key.decode()
    assert redis_db.ttl(key) > 0
