"""Delivering the spool's backlog in-process: oldest first, a bounded batch, what is left of
the TTL, and what cannot be delivered set aside."""

from __future__ import annotations

import itertools
import os
import signal
import time
from types import SimpleNamespace

import pytest
from helpers import delivered_by, shot

from snapcam import delivery, keeping
from snapcam.errors import ShotRefused
from snapcam.spool import JPEG_MAX_BYTES


def replaced(path, make):
    """The file at path replaced by what make(path) creates there."""
    path.unlink()
    make(path)


def secret(path):
    """A file only root may read, beside the spool: what a planted link would leak."""
    victim = path.parent.parent / "secret"
    victim.write_bytes(b"\xff\xd8 root's secret")
    victim.chmod(0o600)
    return victim


UNDELIVERABLE = {
    "fields not an object": lambda jpeg, fields: fields.write_text("[1, 2]"),
    "a field missing": lambda jpeg, fields: fields.write_text('{"mime_type": "image/jpeg"}'),
    "a bad value": lambda jpeg, fields: fields.write_text(
        '{"timestamp": 1700000000, "mime_type": null}'
    ),
    "fields a directory": lambda jpeg, fields: (fields.unlink(), fields.mkdir()),
    "JPEG a dangling symlink": lambda jpeg, fields: (
        jpeg.unlink(),
        jpeg.symlink_to(jpeg.with_name("gone.jpg")),
    ),
    "JPEG unreadable": lambda jpeg, fields: (jpeg.unlink(), jpeg.mkdir()),
    "JPEG empty": lambda jpeg, fields: jpeg.write_bytes(b""),
    "JPEG missing": lambda jpeg, fields: jpeg.unlink(),
    "version 3 without fields": lambda jpeg, fields: fields.write_text(
        '{"version": 3, "key_prefix": "image", "expires_at": 1700003600}'
    ),
    "version 3 without its expiry": lambda jpeg, fields: fields.write_text(
        '{"version": 3, "key_prefix": "image", "fields": {"timestamp": 1, "mime_type": "x"}}'
    ),
    "version 3 with an empty key prefix": lambda jpeg, fields: fields.write_text(
        '{"version": 3, "key_prefix": "", "expires_at": 1700003600, "fields": {}}'
    ),
    "JPEG a FIFO": lambda jpeg, fields: replaced(jpeg, os.mkfifo),
    "fields a FIFO": lambda jpeg, fields: replaced(fields, os.mkfifo),
    "JPEG a link to /dev/zero": lambda jpeg, fields: replaced(
        jpeg, lambda path: path.symlink_to("/dev/zero")
    ),
    "fields a link to /dev/zero": lambda jpeg, fields: replaced(
        fields, lambda path: path.symlink_to("/dev/zero")
    ),
    "JPEG a symlink to a root-only file": lambda jpeg, fields: replaced(
        jpeg, lambda path: path.symlink_to(secret(path))
    ),
    "JPEG a hard link to a root-only file": lambda jpeg, fields: replaced(
        jpeg, lambda path: os.link(secret(path), path)
    ),
    "JPEG larger than any camera's": lambda jpeg, fields: os.truncate(jpeg, JPEG_MAX_BYTES + 1),
    "a field name not UTF-8": lambda jpeg, fields: fields.write_text(
        '{"timestamp": 1700000000, "mime_type": "image/jpeg", "caf\\udce9": 1}'
    ),
}

# What the warning says of each: the thing to look at in the spool.
REASONS = {
    "fields not an object": "its fields are unreadable (not an object)",
    "a field missing": "its fields lack timestamp",
    "a bad value": "its field mime_type holds NoneType, not a string or a number",
    "fields a directory": "its fields cannot be read (Is a directory)",
    "JPEG a dangling symlink": "its JPEG cannot be read (a symbolic link)",
    "JPEG unreadable": "its JPEG cannot be read (Is a directory)",
    "JPEG empty": "its JPEG is empty",
    "JPEG missing": "its JPEG is missing",
    "version 3 without fields": "its fields are unreadable (it holds no fields object)",
    "version 3 without its expiry": (
        "its fields are unreadable (its key_prefix or expires_at is missing)"
    ),
    "version 3 with an empty key prefix": (
        "its fields are unreadable (its key_prefix or expires_at is missing)"
    ),
    "JPEG a FIFO": "its JPEG cannot be read (not a regular file)",
    "fields a FIFO": "its fields cannot be read (not a regular file)",
    "JPEG a link to /dev/zero": "its JPEG cannot be read (a symbolic link)",
    "fields a link to /dev/zero": "its fields cannot be read (a symbolic link)",
    "JPEG a symlink to a root-only file": "its JPEG cannot be read (a symbolic link)",
    "JPEG a hard link to a root-only file": "its JPEG cannot be read (a hard link)",
    "JPEG larger than any camera's": "its JPEG cannot be read (over 64 MB)",
    "a field name not UTF-8": "its field name 'caf\\udce9' is not valid UTF-8",
}


@pytest.fixture
def bounded():
    """The test fails, rather than waits for ever, if reading an entry blocks."""

    def expire(signum, frame):
        raise TimeoutError("reading the spool blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("damage", sorted(UNDELIVERABLE))
def test_undeliverable_entry_is_set_aside_and_the_shots_behind_it_delivered(
    spool, damage, bounded, caplog
):
    now = int(time.time())
    keeping.keep(spool, shot(now - 10))
    keeping.keep(spool, shot(now - 5))
    damaged = spool.entries()[0]
    UNDELIVERABLE[damage](damaged.jpeg_path, damaged.fields_path)

    stored = delivered_by(spool)

    assert [fields["timestamp"] for fields, _prefix, _ttl in stored] == [now - 5]
    assert spool.entries() == []
    assert damaged.fields_path.with_suffix(".json.unreadable").exists()
    assert (
        f"the spooled shot {damaged.jpeg_path.name} cannot be delivered: {REASONS[damage]}; "
        f"set aside as {damaged.fields_path.name}.unreadable"
    ) in caplog.text


def test_shot_redis_refuses_stays_and_the_shots_behind_it_are_delivered(spool):
    now = int(time.time())
    keeping.keep(spool, shot(now - 10, size=5000))
    keeping.keep(spool, shot(now - 5))
    stored = []

    def put(fields, key_prefix, ttl):
        if len(fields["image_data"]) == 5000:
            raise ShotRefused("Redis refused the write: out of memory (maxmemory reached)")
        stored.append(fields["timestamp"])
        return "image:x"

    delivery.deliver(spool, put, 3600, 20, 10.0)

    assert stored == [now - 5]
    assert [entry.timestamp for entry in spool.entries()] == [now - 10]


def test_expired_shots_do_not_use_up_the_batch(spool):
    now = int(time.time())
    for age in (5000, 4000, 3000):
        keeping.keep(spool, shot(now - age, expiry=1000))
    keeping.keep(spool, shot(now - 2, expiry=1000))
    keeping.keep(spool, shot(now - 1, expiry=1000))

    stored = delivered_by(spool, expiry=1000, max_shots=2)

    assert [fields["timestamp"] for fields, _prefix, _ttl in stored] == [now - 2, now - 1]
    assert spool.entries() == []


def test_ttl_never_exceeds_image_expiry_when_the_clock_went_back(spool):
    # Taken before the clock was set back.
    keeping.keep(spool, shot(int(time.time()) + 500, expiry=1000))

    [(_fields, _prefix, ttl)] = delivered_by(spool, expiry=1000)

    assert ttl == 1000


def test_delivery_is_oldest_first_with_what_is_left_of_the_ttl(spool):
    now = int(time.time())
    keeping.keep(spool, shot(now - 100, expiry=1000))
    keeping.keep(spool, shot(now - 200, expiry=1000))

    stored = delivered_by(spool, expiry=1000)

    assert [fields["timestamp"] for fields, _prefix, _ttl in stored] == [now - 200, now - 100]
    assert [ttl for _fields, _prefix, ttl in stored] == pytest.approx([800, 900], abs=2)
    assert spool.entries() == []


def test_expired_shot_is_discarded_not_delivered(spool):
    keeping.keep(spool, shot(int(time.time()) - 5000))

    assert delivered_by(spool, expiry=3600) == []
    assert spool.entries() == []


def test_delivery_stops_after_its_batch(spool):
    now = int(time.time())
    for age in range(5):
        keeping.keep(spool, shot(now - age))

    assert len(delivered_by(spool, max_shots=3)) == 3
    assert len(spool.entries()) == 2


def test_delivery_stops_at_its_time_bound(spool, monkeypatch):
    now = int(time.time())
    for age in range(5):
        keeping.keep(spool, shot(now - age))
    ticks = itertools.count()  # a clock that moves a second each time it is read
    clock = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    monkeypatch.setattr(delivery, "time", SimpleNamespace(**{**clock, "monotonic": ticks.__next__}))

    stored = []
    delivery.deliver(spool, lambda fields, prefix, ttl: stored.append(fields) or "k", 3600, 20, 2.5)

    assert 0 < len(stored) < 5
    assert len(spool.entries()) == 5 - len(stored)


def test_failed_delivery_keeps_the_shot(spool):
    keeping.keep(spool, shot(int(time.time())))

    def refuse(fields, key_prefix, ttl):
        raise RuntimeError("Redis refused")

    with pytest.raises(RuntimeError):
        delivery.deliver(spool, refuse, 3600, 20, 10.0)
    assert len(spool.entries()) == 1
