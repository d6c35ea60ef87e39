"""The spool in-process: its on-disk format, trimming, locking and delivery."""

from __future__ import annotations

import json
import os
import time

import pytest

from snapcam.spool import FORMAT_VERSION, Spool, write_atomically


@pytest.fixture
def spool(tmp_path) -> Spool:
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    spool.prepare()
    return spool


def shot(timestamp: int, size: int = 1000) -> dict:
    return {
        "image_data": b"\xff\xd8" + bytes(size - 2),
        "timestamp": timestamp,
        "mime_type": "image/jpeg",
        "lux": 40,
    }


def delivered_by(spool: Spool, expiry: int = 3600, max_shots: int = 20) -> list[tuple]:
    stored = []
    spool.deliver(
        lambda fields, ttl: stored.append((fields, ttl)) or f"image:{fields['timestamp']}",
        expiry,
        max_shots,
        10.0,
    )
    return stored


def test_kept_shot_is_a_jpeg_and_its_fields_in_the_current_format(spool):
    spool.keep(shot(1700000000))

    [entry] = spool.entries()
    assert entry.jpeg_path.read_bytes() == shot(1700000000)["image_data"]
    document = json.loads(entry.fields_path.read_text())
    assert document == {
        "version": FORMAT_VERSION,
        "fields": {"timestamp": 1700000000, "mime_type": "image/jpeg", "lux": 40},
    }


def test_writing_leaves_no_partial_file(spool):
    spool.keep(shot(1700000000))

    assert [path for path in spool.directory.iterdir() if path.name.endswith(".partial")] == []


def test_version_1_entry_is_delivered(spool):
    now = int(time.time())
    (spool.directory / f"{now}-1-abcdef.jpg").write_bytes(b"\xff\xd8jpeg")
    (spool.directory / f"{now}-1-abcdef.json").write_text(
        json.dumps({"timestamp": now, "mime_type": "image/jpeg", "lux": 3})
    )

    [(fields, _ttl)] = delivered_by(spool)

    assert fields == {
        "timestamp": now,
        "mime_type": "image/jpeg",
        "lux": 3,
        "image_data": b"\xff\xd8jpeg",
    }
    assert spool.entries() == []


def test_unknown_format_is_set_aside_and_the_jpeg_kept(spool):
    now = int(time.time())
    (spool.directory / f"{now}-1-abcdef.jpg").write_bytes(b"\xff\xd8")
    (spool.directory / f"{now}-1-abcdef.json").write_text('{"version": 99, "fields": {}}')

    assert delivered_by(spool) == []
    assert (spool.directory / f"{now}-1-abcdef.json.unreadable").exists()
    assert (spool.directory / f"{now}-1-abcdef.jpg").exists()


def test_delivery_is_oldest_first_with_what_is_left_of_the_ttl(spool):
    now = int(time.time())
    spool.keep(shot(now - 100))
    spool.keep(shot(now - 200))

    stored = delivered_by(spool, expiry=1000)

    assert [fields["timestamp"] for fields, _ttl in stored] == [now - 200, now - 100]
    assert [ttl for _fields, ttl in stored] == pytest.approx([800, 900], abs=2)
    assert spool.entries() == []


def test_expired_shot_is_discarded_not_delivered(spool):
    spool.keep(shot(int(time.time()) - 5000))

    assert delivered_by(spool, expiry=3600) == []
    assert spool.entries() == []


def test_delivery_stops_after_its_batch(spool):
    now = int(time.time())
    for age in range(5):
        spool.keep(shot(now - age))

    assert len(delivered_by(spool, max_shots=3)) == 3
    assert len(spool.entries()) == 2


def test_failed_delivery_keeps_the_shot(spool):
    spool.keep(shot(int(time.time())))

    def refuse(fields, ttl):
        raise RuntimeError("Redis refused")

    with pytest.raises(RuntimeError):
        spool.deliver(refuse, 3600, 20, 10.0)
    assert len(spool.entries()) == 1


def test_trim_drops_the_oldest_past_the_limit_and_keeps_the_newest(spool):
    now = int(time.time())
    for age in (3, 2, 1):
        spool.keep(shot(now - age, size=400_000))

    assert [entry.timestamp for entry in spool.entries()] == [now - 2, now - 1]


def test_newest_shot_is_kept_even_over_the_limit(tmp_path):
    spool = Spool(tmp_path / "small", max_bytes=1000)
    spool.prepare()

    spool.keep(shot(1700000000, size=50_000))

    assert len(spool.entries()) == 1


def test_second_holder_of_the_lock_is_told_it_is_held(spool):
    with spool.locked() as first, spool.locked(wait=False) as second:
        assert (first, second) == (True, False)


def test_state_creates_nothing(tmp_path):
    spool = Spool(tmp_path / "not" / "yet", max_bytes=1000)

    assert spool.state() == "created by the first shot"
    assert not (tmp_path / "not").exists()


def test_spooled_files_take_the_umask_and_are_not_executable(spool):
    umask = os.umask(0o022)
    os.umask(umask)

    spool.keep(shot(1700000000))

    [entry] = spool.entries()
    for path in (entry.jpeg_path, entry.fields_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_temporary_file_planted_as_a_symlink_is_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / ".shot.jpg.partial").symlink_to(victim)

    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "shot.jpg", b"\xff\xd8\xff\xd9")

    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "shot.jpg").exists()
