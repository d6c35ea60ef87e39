"""The spool in-process: its on-disk format, trimming, locking and delivery."""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import make_app

from snapcam import spool as spool_module
from snapcam.errors import ShotRefused, SpoolError
from snapcam.spool import FORMAT_VERSION, ORPHAN_GRACE_SECONDS, Spool, write_atomically


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


@pytest.fixture
def file_size_limit():
    """Files of this process may grow to 10 kB, as on a disk that fills up: a write past it
    fails with EFBIG (Python ignores SIGXFSZ)."""
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, limits[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)


def test_failed_write_leaves_no_file_behind(spool, file_size_limit):
    with pytest.raises(SpoolError, match="File too large"):
        spool.keep(shot(1700000000, size=50_000))

    assert sorted(path.name for path in spool.directory.iterdir()) == [".lock"]


def test_fields_failing_to_fit_take_their_jpeg_away_too(small_disk):
    spool = Spool(small_disk / "spool", max_bytes=100_000_000)
    spool.prepare()
    with spool.locked():
        pass
    disk = os.statvfs(small_disk)
    (small_disk / "ballast").write_bytes(bytes((disk.f_bavail - 1) * disk.f_frsize))

    with pytest.raises(SpoolError, match="No space left on device"):
        spool.keep(shot(1700000000, size=4000))  # the JPEG fits in the last block, not the rest

    assert sorted(path.name for path in spool.directory.iterdir()) == [".lock"]


def test_full_disk_drops_the_oldest_shots_for_the_new_one(small_disk):
    spool = Spool(small_disk / "spool", max_bytes=100_000_000)
    spool.prepare()
    now = int(time.time())
    for age in (30, 20, 10):
        spool.keep(shot(now - age, size=300_000))

    spool.keep(shot(now, size=300_000))

    kept = [entry.timestamp for entry in spool.entries()]
    assert kept[-1] == now and now - 30 not in kept
    assert [path for path in spool.directory.iterdir() if path.name.endswith(".partial")] == []


def test_lock_file_is_created_writable_by_every_user(spool):
    with spool.locked():
        pass

    assert stat.S_IMODE((spool.directory / ".lock").stat().st_mode) == 0o666


KEEP_AS_NOBODY = """
import logging, sys
from pathlib import Path
from snapcam.spool import Spool
logging.basicConfig(format="%(message)s")
spool = Spool(Path(sys.argv[1]), 1_000)
spool.keep({"image_data": b"\\xff\\xd8" * 1000, "timestamp": 1700000001, "mime_type": "x"})
"""


@pytest.fixture
def shared_spool():
    """A spool every user may write to, as a root test shot and the service user share it."""
    parent = Path(tempfile.mkdtemp())
    parent.chmod(0o755)
    spool = Spool(parent / "spool", max_bytes=1_000)
    spool.prepare()
    spool.directory.chmod(0o777)
    make_app(parent / "app", copy=True)  # snap's code, readable by that other user
    yield spool
    shutil.rmtree(parent)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("mode", [0o666, 0o644])
def test_lock_file_another_user_made_still_serves_this_run(shared_spool, mode):
    shared_spool.keep(shot(1700000000))
    (shared_spool.directory / ".lock").chmod(mode)

    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
        + ["-c", KEEP_AS_NOBODY, str(shared_spool.directory)],
        cwd=shared_spool.directory.parent / "app",
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert "lock" not in result.stderr
    # Trimmed, as only the holder of the lock trims.
    assert [entry.timestamp for entry in shared_spool.entries()] == [1700000001]


def test_waiting_for_the_lock_is_bounded(spool, monkeypatch):
    monkeypatch.setattr(spool_module, "LOCK_WAIT_SECONDS", 0.5)
    keeping = threading.Thread(target=spool.keep, args=(shot(1700000000),), daemon=True)
    with spool.locked() as first:
        started = time.monotonic()
        keeping.start()
        keeping.join(timeout=5)
        waited = time.monotonic() - started

    assert first and not keeping.is_alive()
    assert 0.5 <= waited < 2
    assert len(spool.entries()) == 1


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
}


@pytest.mark.parametrize("damage", sorted(UNDELIVERABLE))
def test_undeliverable_entry_is_set_aside_and_the_shots_behind_it_delivered(spool, damage):
    now = int(time.time())
    spool.keep(shot(now - 10))
    spool.keep(shot(now - 5))
    damaged = spool.entries()[0]
    UNDELIVERABLE[damage](damaged.jpeg_path, damaged.fields_path)

    stored = delivered_by(spool)

    assert [fields["timestamp"] for fields, _ttl in stored] == [now - 5]
    assert spool.entries() == []
    assert damaged.fields_path.with_suffix(".json.unreadable").exists()


def test_shot_redis_refuses_stays_and_the_shots_behind_it_are_delivered(spool):
    now = int(time.time())
    spool.keep(shot(now - 10, size=5000))
    spool.keep(shot(now - 5))
    stored = []

    def put(fields, ttl):
        if len(fields["image_data"]) == 5000:
            raise ShotRefused("Redis refused the write: out of memory (maxmemory reached)")
        stored.append(fields["timestamp"])
        return "image:x"

    spool.deliver(put, 3600, 20, 10.0)

    assert stored == [now - 5]
    assert [entry.timestamp for entry in spool.entries()] == [now - 10]


def test_expired_shots_do_not_use_up_the_batch(spool):
    now = int(time.time())
    for age in (5000, 4000, 3000):
        spool.keep(shot(now - age))
    spool.keep(shot(now - 2))
    spool.keep(shot(now - 1))

    stored = delivered_by(spool, expiry=1000, max_shots=2)

    assert [fields["timestamp"] for fields, _ttl in stored] == [now - 2, now - 1]
    assert spool.entries() == []


def test_ttl_never_exceeds_image_expiry_when_the_clock_went_back(spool):
    spool.keep(shot(int(time.time()) + 500))  # taken before the clock was set back

    [(_fields, ttl)] = delivered_by(spool, expiry=1000)

    assert ttl == 1000


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_orphans_are_removed_after_the_grace_period(spool):
    old_partial = spool.directory / ".1700000000-1-abcdef.jpg.partial"
    old_jpeg = spool.directory / "1700000000-1-abcdef.jpg"
    young_jpeg = spool.directory / "1700000001-1-abcdef.jpg"
    for path in (old_partial, old_jpeg, young_jpeg):
        path.write_bytes(b"\xff\xd8")
    age(old_partial, ORPHAN_GRACE_SECONDS + 60)
    age(old_jpeg, ORPHAN_GRACE_SECONDS + 60)

    spool.keep(shot(1700000002))

    assert not old_partial.exists() and not old_jpeg.exists()
    assert young_jpeg.exists()


def test_orphans_count_against_the_size_limit(spool):
    (spool.directory / ".1700000000-1-abcdef.jpg.partial").write_bytes(bytes(600_000))
    now = int(time.time())

    spool.keep(shot(now - 1, size=300_000))
    spool.keep(shot(now, size=300_000))

    assert [entry.timestamp for entry in spool.entries()] == [now]


def test_set_aside_fields_keep_their_jpeg_from_the_orphan_cleaning(spool):
    spool.keep(shot(1700000000))
    [entry] = spool.entries()
    entry.fields_path.rename(entry.fields_path.with_suffix(".json.unreadable"))
    age(entry.jpeg_path, ORPHAN_GRACE_SECONDS + 60)

    spool.keep(shot(1700000001))

    assert entry.jpeg_path.exists()


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


def test_delivery_stops_at_its_time_bound(spool, monkeypatch):
    now = int(time.time())
    for age in range(5):
        spool.keep(shot(now - age))
    ticks = itertools.count()  # a clock that moves a second each time it is read
    clock = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    monkeypatch.setattr(
        spool_module, "time", SimpleNamespace(**{**clock, "monotonic": ticks.__next__})
    )

    stored = []
    spool.deliver(lambda fields, ttl: stored.append(fields) or "key", 3600, 20, 2.5)

    assert 0 < len(stored) < 5
    assert len(spool.entries()) == 5 - len(stored)


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


def test_trim_drops_as_many_of_the_oldest_as_it_takes(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    spool.prepare()
    now = int(time.time())
    for age in (4, 3, 2, 1):
        spool.add(shot(now - age, size=400_000))  # no trimming on the way

    spool.trim()

    assert [entry.timestamp for entry in spool.entries()] == [now - 2, now - 1]


def test_spool_exactly_at_its_limit_is_not_trimmed(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1)
    spool.prepare()
    now = int(time.time())
    for age in (2, 1):
        spool.add(shot(now - age, size=1000))
    spool.max_bytes = sum(entry.size for entry in spool.entries())

    spool.trim()

    assert len(spool.entries()) == 2


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
