"""Adding shots to the spool, whole or not at all, and trimming it to its limit, in-process."""

from __future__ import annotations

import os
import time

import pytest
from helpers import shot

from snapcam import keeping
from snapcam.errors import SpoolError
from snapcam.keeping import ORPHAN_GRACE_SECONDS, write_atomically
from snapcam.spool import Spool


def test_writing_leaves_no_partial_file(spool):
    keeping.keep(spool, shot(1700000000))

    assert [path for path in spool.directory.iterdir() if path.name.endswith(".partial")] == []


def test_failed_write_leaves_no_file_behind(small_disk):
    spool = Spool(small_disk / "spool", max_bytes=100_000_000)
    spool.prepare()
    with spool.locked():
        pass
    disk = os.statvfs(small_disk)
    (small_disk / "ballast").write_bytes(bytes(disk.f_bavail * disk.f_frsize))

    with pytest.raises(SpoolError, match="No space left on device"):
        keeping.keep(spool, shot(1700000000, size=50_000))

    assert sorted(path.name for path in spool.directory.iterdir()) == [".lock"]


def test_fields_failing_to_fit_take_their_jpeg_away_too(small_disk):
    spool = Spool(small_disk / "spool", max_bytes=100_000_000)
    spool.prepare()
    with spool.locked():
        pass
    disk = os.statvfs(small_disk)
    (small_disk / "ballast").write_bytes(bytes((disk.f_bavail - 1) * disk.f_frsize))

    with pytest.raises(SpoolError, match="No space left on device"):
        # the JPEG fits in the last block, not the rest
        keeping.keep(spool, shot(1700000000, size=4000))

    assert sorted(path.name for path in spool.directory.iterdir()) == [".lock"]


def test_full_disk_drops_the_oldest_shots_for_the_new_one(small_disk):
    spool = Spool(small_disk / "spool", max_bytes=100_000_000)
    spool.prepare()
    now = int(time.time())
    for age in (30, 20, 10):
        keeping.keep(spool, shot(now - age, size=300_000))

    keeping.keep(spool, shot(now, size=300_000))

    kept = [entry.timestamp for entry in spool.entries()]
    assert kept[-1] == now and now - 30 not in kept
    assert [path for path in spool.directory.iterdir() if path.name.endswith(".partial")] == []


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

    keeping.keep(spool, shot(1700000002))

    assert not old_partial.exists() and not old_jpeg.exists()
    assert young_jpeg.exists()


def test_orphans_count_against_the_size_limit(spool):
    (spool.directory / ".1700000000-1-abcdef.jpg.partial").write_bytes(bytes(600_000))
    now = int(time.time())

    keeping.keep(spool, shot(now - 1, size=300_000))
    keeping.keep(spool, shot(now, size=300_000))

    assert [entry.timestamp for entry in spool.entries()] == [now]


def test_set_aside_fields_keep_their_jpeg_from_the_orphan_cleaning(spool):
    keeping.keep(spool, shot(1700000000))
    [entry] = spool.entries()
    entry.fields_path.rename(entry.fields_path.with_suffix(".json.unreadable"))
    age(entry.jpeg_path, ORPHAN_GRACE_SECONDS + 60)

    keeping.keep(spool, shot(1700000001))

    assert entry.jpeg_path.exists()


def test_trim_drops_the_oldest_past_the_limit_and_keeps_the_newest(spool):
    now = int(time.time())
    for age in (3, 2, 1):
        keeping.keep(spool, shot(now - age, size=400_000))

    assert [entry.timestamp for entry in spool.entries()] == [now - 2, now - 1]


def test_trim_drops_as_many_of_the_oldest_as_it_takes(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    spool.prepare()
    now = int(time.time())
    for age in (4, 3, 2, 1):
        keeping.add(spool, shot(now - age, size=400_000))  # no trimming on the way

    keeping.trim(spool)

    assert [entry.timestamp for entry in spool.entries()] == [now - 2, now - 1]


def test_spool_exactly_at_its_limit_is_not_trimmed(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1)
    spool.prepare()
    now = int(time.time())
    for age in (2, 1):
        keeping.add(spool, shot(now - age, size=1000))
    spool.max_bytes = sum(entry.size for entry in spool.entries())

    keeping.trim(spool)

    assert len(spool.entries()) == 2


def test_newest_shot_is_kept_even_over_the_limit(tmp_path):
    spool = Spool(tmp_path / "small", max_bytes=1000)
    spool.prepare()

    keeping.keep(spool, shot(1700000000, size=50_000))

    assert len(spool.entries()) == 1


def test_temporary_file_planted_as_a_symlink_is_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / ".shot.jpg.partial").symlink_to(victim)

    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "shot.jpg", b"\xff\xd8\xff\xd9")

    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "shot.jpg").exists()
