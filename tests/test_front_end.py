"""Shots read back exactly as the seed web front end reads them, in both its versions.

Version 1 lists ids with SCAN MATCH image:* TYPE HASH (prefix dropped, sorted newest first as
strings), serves /api/data/<id> from HMGET of timestamp, mime_type and lux, each decoded as
UTF-8, and serves /api/image/<id> from HMGET of image_data and mime_type. Its page titles each
card with new Date(parseInt(id * 1000, 10)).toUTCString().

Version 2 creates a search index once and lists the 9 newest shots with FT.SEARCH ... RETURN 3
timestamp mime_type lux SORTBY timestamp DESC LIMIT 0 9; it reads every one of those fields
from each document, and dates the card from the timestamp field the same way.

The helpers below send the same commands with the same arguments and decode the replies the
same way; a field the front end would fail on (a nil in HMGET, a field missing from a search
document) fails the test with the reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import pytest
import redis
from helpers import FAKE_CAMERA

PREFIX = "image"  # the front end's own key prefix: it reads PREFIX:<id>
METADATA_FIELDS = ("timestamp", "mime_type", "lux")
INDEX = "idx:images"
INDEX_SCHEMA = (
    "ON", "HASH", "PREFIX", "1", f"{PREFIX}:",
    "SCHEMA", "mime_type", "TAG", "lux", "NUMERIC", "SORTABLE", "timestamp", "NUMERIC", "SORTABLE",
)  # fmt: skip
SEARCH_ARGS = (
    "*", "RETURN", "3", *METADATA_FIELDS, "SORTBY", "timestamp", "DESC", "LIMIT", "0", "9",
)  # fmt: skip


# --- The front end's reads ---------------------------------------------------------------


def list_ids(client: redis.Redis, prefix: str = PREFIX) -> list[str]:
    """Version 1's /api/images: every SCAN batch to the end, ids newest first as strings."""
    ids = []
    cursor = 0
    while True:
        cursor, keys = client.execute_command(
            "SCAN", cursor, "MATCH", f"{prefix}:*", "TYPE", "HASH"
        )
        ids += [key.decode("utf-8").removeprefix(f"{prefix}:") for key in keys]
        if int(cursor) == 0:
            return sorted(ids, reverse=True)


def hmget(client: redis.Redis, key: str, fields: tuple[str, ...]) -> list[bytes]:
    values = client.execute_command("HMGET", key, *fields)
    missing = [name for name, value in zip(fields, values) if value is None]
    assert not missing, f"HMGET {key} gave nil for {missing}: the front end's decode fails"
    return values


def image_data(client: redis.Redis, image_id: str, prefix: str = PREFIX) -> dict[str, str]:
    """Version 1's /api/data/<id>: HMGET of the metadata fields, each decoded as UTF-8."""
    values = hmget(client, f"{prefix}:{image_id}", METADATA_FIELDS)
    return {name: value.decode("utf-8") for name, value in zip(METADATA_FIELDS, values)}


def image(client: redis.Redis, image_id: str, prefix: str = PREFIX) -> tuple[bytes, str]:
    """/api/image/<id> (both versions): the bytes and the MIME type they are sent with."""
    data, mime_type = hmget(client, f"{prefix}:{image_id}", ("image_data", "mime_type"))
    return data, mime_type.decode("utf-8")


def create_index(client: redis.Redis) -> None:
    """Version 2's index, made once before the front end runs."""
    client.execute_command("FT.CREATE", INDEX, *INDEX_SCHEMA)


def search_images(client: redis.Redis) -> list[dict[str, str]]:
    """Version 2's /api/images: id (key without image:) and the three fields of each document."""
    reply = client.execute_command("FT.SEARCH", INDEX, *SEARCH_ARGS)
    images = []
    for key, fields in zip(reply[1::2], reply[2::2]):
        key = key.decode("utf-8")
        values = {
            name.decode("utf-8"): value.decode("utf-8")
            for name, value in zip(fields[::2], fields[1::2])
        }
        missing = [name for name in METADATA_FIELDS if name not in values]
        assert not missing, f"FT.SEARCH gave {key} without {missing}: the front end fails on it"
        images.append({"id": key.removeprefix(f"{PREFIX}:"), **values})
    return images


# --- The page's date: new Date(parseInt(value * 1000, 10)).toUTCString() ----------------

JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
JS_RADIX = {"x": 16, "o": 8, "b": 2}
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def js_number(text: str) -> float:
    """A string as JavaScript's ToNumber reads it (what `text * 1000` does first)."""
    text = text.strip(JS_WHITESPACE)
    if not text:
        return 0.0
    if JS_DECIMAL.fullmatch(text):
        return float(text)
    radix = re.fullmatch(r"0([xXoObB])([0-9a-fA-F]+)", text)
    if radix:
        try:
            return float(int(radix.group(2), JS_RADIX[radix.group(1).lower()]))
        except ValueError:
            return math.nan
    return math.nan


def js_parse_int(number: float) -> float:
    """parseInt(number, 10): the leading integer digits of the number's string form."""
    if not math.isfinite(number):
        return math.nan
    if number == 0 or 1e-6 <= abs(number) < 1e21:
        return float(math.trunc(number))
    # Outside that range JavaScript writes the number with an exponent, e.g. 1.7e+21.
    return float(re.match(r"-?\d+", repr(number)).group())


def page_date(value: str) -> float:
    """Seconds since the epoch of the card's Date; NaN for an Invalid Date."""
    milliseconds = js_parse_int(js_number(value) * 1000)
    if not math.isfinite(milliseconds) or abs(milliseconds) > 8.64e15:
        return math.nan
    return milliseconds / 1000


def utc_string(seconds: float) -> str:
    """Date.prototype.toUTCString of a time in seconds."""
    if not math.isfinite(seconds):
        return "Invalid Date"
    t = time.gmtime(math.floor(seconds))
    return (
        f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def card_title(value: str) -> str:
    return utc_string(page_date(value))


def assert_dated_to(value: str, second: int) -> None:
    date = page_date(value)
    assert math.isfinite(date), f"the page shows {value!r} as an Invalid Date"
    assert math.floor(date) == second, f"the page dates {value!r} to {date}, not {second}"
    assert card_title(value) == utc_string(second)


# --- Fixtures ----------------------------------------------------------------------------

CLOCK_HOOK = """\
import os
import time

_now = int(os.environ["SNAP_TEST_CLOCK"]) + 0.25
time.time = lambda: _now
time.time_ns = lambda: int(_now * 1_000_000_000)
"""


@pytest.fixture
def run_at(run_snap, tmp_path):
    """run_snap with the clock of snap's process stopped at a given second (a sitecustomize
    ahead of the fake camera on PYTHONPATH), so that several runs share one second."""
    hook = tmp_path / "clock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CLOCK_HOOK)

    def run(second: int, *args: str, **env: str):
        return run_snap(
            *args,
            PYTHONPATH=f"{hook}{os.pathsep}{FAKE_CAMERA}",
            SNAP_TEST_CLOCK=str(second),
            **env,
        )

    return run


def front_end_client(server) -> redis.Redis:
    """A client as the seed's redis-py 4.5 makes one: RESP2. (redis-py 8 speaks RESP3 by
    default, in which FT.SEARCH answers in another shape.)"""
    return redis.Redis(host="127.0.0.1", port=server.port, protocol=2)


@pytest.fixture
def front_end(redis_server, redis_db) -> redis.Redis:
    """The front end's client of the emptied test Redis."""
    return front_end_client(redis_server)


@pytest.fixture
def search_front_end(search_redis) -> redis.Redis:
    """The front end's client of the Search-enabled Redis, emptied, with the front end's
    index made before any shot."""
    client = front_end_client(search_redis)
    try:
        client.execute_command("FT.DROPINDEX", INDEX)
    except redis.ResponseError:
        pass
    client.flushall()
    create_index(client)
    return client


def shot(run, *args: str, **env: str) -> dict:
    result = run(*args, "--json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def image_id(report: dict, prefix: str = PREFIX) -> str:
    return report["key"].removeprefix(f"{prefix}:")


# --- A shot --------------------------------------------------------------------------------


def test_shot_is_listed_under_its_capture_second(run_snap, front_end):
    report = shot(run_snap)

    assert list_ids(front_end) == [str(report["timestamp"])]


def test_shot_metadata_decodes_as_the_data_route_reads_it(run_snap, front_end):
    report = shot(run_snap)

    data = image_data(front_end, image_id(report))

    assert data["timestamp"] == str(report["timestamp"])
    assert data["mime_type"] == "image/jpeg"
    assert data["lux"] == str(report["lux"]) and int(data["lux"]) >= 0


def test_shot_image_is_served_as_the_jpeg_it_is(run_snap, front_end):
    report = shot(run_snap)

    data, mime_type = image(front_end, image_id(report))

    assert mime_type == "image/jpeg"
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert len(data) == report["bytes"]


def test_shot_card_is_dated_to_its_capture_second(run_snap, front_end):
    report = shot(run_snap)

    (listed,) = list_ids(front_end)

    assert_dated_to(listed, report["timestamp"])


def test_shots_are_listed_newest_first(run_at, front_end):
    now = int(time.time())
    older, newer = shot(run_at, now - 60), shot(run_at, now)

    assert list_ids(front_end) == [image_id(newer), image_id(older)]


# --- The search version --------------------------------------------------------------------


def test_search_finds_the_shot_with_its_fields(run_snap, search_redis, search_front_end):
    report = shot(run_snap, REDIS_URL=search_redis.url)

    assert search_images(search_front_end) == [
        {
            "id": image_id(report),
            "timestamp": str(report["timestamp"]),
            "mime_type": "image/jpeg",
            "lux": str(report["lux"]),
        }
    ]


def test_search_sorts_shots_newest_first(run_at, search_redis, search_front_end):
    now = int(time.time())
    older = shot(run_at, now - 60, REDIS_URL=search_redis.url)
    newer = shot(run_at, now, REDIS_URL=search_redis.url)

    found = search_images(search_front_end)

    assert [found_image["id"] for found_image in found] == [image_id(newer), image_id(older)]


def test_search_card_is_dated_to_the_capture_second(run_snap, search_redis, search_front_end):
    report = shot(run_snap, REDIS_URL=search_redis.url)

    (found,) = search_images(search_front_end)

    assert_dated_to(found["timestamp"], report["timestamp"])


def test_search_result_id_serves_the_image(run_snap, search_redis, search_front_end):
    shot(run_snap, REDIS_URL=search_redis.url)

    (found,) = search_images(search_front_end)

    assert image(search_front_end, found["id"])[1] == "image/jpeg"


# --- Two shots in one second -----------------------------------------------------------------


@pytest.fixture
def same_second(run_at, front_end) -> int:
    """Two shots stored in one second; that second."""
    second = int(time.time())
    first, again = shot(run_at, second), shot(run_at, second)
    assert first["timestamp"] == again["timestamp"] == second, "the clock hook did not hold"
    return second


def test_same_second_shots_get_decimal_ids_the_second_sorting_first(same_second, front_end):
    assert list_ids(front_end) == [f"{same_second}.1", str(same_second)]


def test_same_second_shots_both_decode_as_the_data_route_reads_them(same_second, front_end):
    for listed in list_ids(front_end):
        assert image_data(front_end, listed)["timestamp"] == str(same_second)


def test_same_second_shots_both_cards_are_dated_to_that_second(same_second, front_end):
    for listed in list_ids(front_end):
        assert_dated_to(listed, same_second)


def test_same_second_shots_both_found_by_search(run_at, search_redis, search_front_end):
    second = int(time.time())
    for _ in range(2):
        shot(run_at, second, REDIS_URL=search_redis.url)

    found = search_images(search_front_end)

    assert [found_image["timestamp"] for found_image in found] == [str(second)] * 2
    assert len({found_image["id"] for found_image in found}) == 2
    for found_image in found:
        assert image(search_front_end, found_image["id"])[1] == "image/jpeg"


# --- No Lux from the camera --------------------------------------------------------------------


def test_no_lux_shot_decodes_with_lux_minus_one(run_snap, front_end):
    report = shot(run_snap, FAKE_CAMERA_FAULTS="no-lux")

    assert image_data(front_end, image_id(report))["lux"] == "-1"


def test_no_lux_shot_is_found_by_search_with_lux_minus_one(
    run_snap, search_redis, search_front_end
):
    shot(run_snap, REDIS_URL=search_redis.url, FAKE_CAMERA_FAULTS="no-lux")

    (found,) = search_images(search_front_end)

    assert found["lux"] == "-1"


def test_no_lux_shot_is_listed_and_dated(run_snap, front_end):
    report = shot(run_snap, FAKE_CAMERA_FAULTS="no-lux")

    (listed,) = list_ids(front_end)

    assert_dated_to(listed, report["timestamp"])


# --- A per-Pi prefix ----------------------------------------------------------------------------

GARDEN = "image:garden"


def test_per_pi_shot_is_listed_by_the_image_scan(run_snap, front_end):
    report = shot(run_snap, IMAGE_KEY_PREFIX=GARDEN)

    assert list_ids(front_end) == [f"garden:{report['timestamp']}"]


def test_per_pi_shot_decodes_as_the_data_route_reads_it(run_snap, front_end):
    report = shot(run_snap, IMAGE_KEY_PREFIX=GARDEN)

    (listed,) = list_ids(front_end)

    assert image_data(front_end, listed) == {
        "timestamp": str(report["timestamp"]),
        "mime_type": "image/jpeg",
        "lux": str(report["lux"]),
    }


def test_per_pi_card_is_dated_by_a_front_end_on_the_pi_prefix(run_snap, front_end):
    report = shot(run_snap, IMAGE_KEY_PREFIX=GARDEN)

    (listed,) = list_ids(front_end, prefix=GARDEN)

    assert_dated_to(listed, report["timestamp"])


def test_per_pi_shot_is_found_by_search_and_serves_its_image(
    run_snap, search_redis, search_front_end
):
    report = shot(run_snap, REDIS_URL=search_redis.url, IMAGE_KEY_PREFIX=GARDEN)

    (found,) = search_images(search_front_end)

    assert found["id"] == f"garden:{report['timestamp']}"
    assert image(search_front_end, found["id"])[1] == "image/jpeg"


def test_per_pi_search_card_is_dated_to_the_capture_second(
    run_snap, search_redis, search_front_end
):
    report = shot(run_snap, REDIS_URL=search_redis.url, IMAGE_KEY_PREFIX=GARDEN)

    (found,) = search_images(search_front_end)

    assert_dated_to(found["timestamp"], report["timestamp"])


# --- Extra metadata ------------------------------------------------------------------------------

EXTRA = {"CAMERA_METADATA": "ExposureTime,AnalogueGain"}


def test_extra_metadata_is_stored_in_the_same_hash(run_snap, front_end):
    report = shot(run_snap, **EXTRA)

    stored = front_end.execute_command("HKEYS", report["key"])

    assert {b"exposure_time", b"analogue_gain"} <= set(stored)


def test_extra_metadata_leaves_the_data_route_unchanged(run_snap, front_end):
    report = shot(run_snap, **EXTRA)

    data = image_data(front_end, image_id(report))

    assert data == {
        "timestamp": str(report["timestamp"]),
        "mime_type": "image/jpeg",
        "lux": str(report["lux"]),
    }


def test_extra_metadata_leaves_search_results_unchanged(run_snap, search_redis, search_front_end):
    report = shot(run_snap, REDIS_URL=search_redis.url, **EXTRA)

    (found,) = search_images(search_front_end)

    assert found == {
        "id": image_id(report),
        "timestamp": str(report["timestamp"]),
        "mime_type": "image/jpeg",
        "lux": str(report["lux"]),
    }


# --- The camera's status hash ------------------------------------------------------------------

STATUS_KEY = "snap:camera:garden"


def test_status_hash_is_not_listed_by_the_image_scan(run_snap, front_end):
    report = shot(run_snap, CAMERA_NAME="garden")
    run_snap(CAMERA_NAME="garden", FAKE_CAMERA_FAULTS="absent")  # a failure is written too

    assert front_end.exists(STATUS_KEY)
    assert list_ids(front_end) == [image_id(report)]


def test_status_hash_is_not_indexed_by_search(run_snap, search_redis, search_front_end):
    report = shot(run_snap, REDIS_URL=search_redis.url, CAMERA_NAME="garden")
    run_snap(REDIS_URL=search_redis.url, CAMERA_NAME="garden", FAKE_CAMERA_FAULTS="absent")

    total = search_front_end.execute_command("FT.SEARCH", INDEX, "*", "LIMIT", "0", "0")

    assert search_front_end.exists(STATUS_KEY)
    assert total == [1]
    assert [found["id"] for found in search_images(search_front_end)] == [image_id(report)]
