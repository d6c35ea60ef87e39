"""snapcam.spool in-process: the on-disk format and reading the entries back."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from helpers import delivered_by, shot

from snapcam import keeping
from snapcam.shot import NO_LUX, SHOT_ID
from snapcam.spool import FORMAT_VERSION, Spool


def test_kept_shot_is_a_jpeg_and_its_fields_in_the_current_format(spool):
    keeping.keep(spool, shot(1700000000))

    [entry] = spool.entries()
    assert entry.jpeg_path.read_bytes() == shot(1700000000).fields["image_data"]
    document = json.loads(entry.fields_path.read_text())
    assert document == {
        "version": FORMAT_VERSION,
        "key_prefix": "image",
        "expires_at": 1700003600,
        "fields": {"timestamp": 1700000000, "mime_type": "image/jpeg", "lux": 40},
    }


def test_version_1_entry_is_delivered(spool):
    now = int(time.time())
    (spool.directory / f"{now}-1-abcdef.jpg").write_bytes(b"\xff\xd8jpeg")
    (spool.directory / f"{now}-1-abcdef.json").write_text(
        json.dumps({"timestamp": now, "mime_type": "image/jpeg", "lux": 3})
    )

    [(fields, _prefix, _ttl)] = delivered_by(spool)

    assert {name: value for name, value in fields.items() if name != "shot_id"} == {
        "timestamp": now,
        "mime_type": "image/jpeg",
        "lux": 3,
        "image_data": b"\xff\xd8jpeg",
    }
    assert spool.entries() == []


def test_version_2_entry_takes_the_delivering_runs_prefix_and_expiry(spool):
    now = int(time.time())
    (spool.directory / f"{now - 100}-1-abcdef.jpg").write_bytes(b"\xff\xd8jpeg")
    fields = {"timestamp": now - 100, "mime_type": "image/jpeg", "lux": 3, "shot_id": "ab"}
    document = {"version": 2, "fields": fields}
    (spool.directory / f"{now - 100}-1-abcdef.json").write_text(json.dumps(document))

    [(_fields, key_prefix, ttl)] = delivered_by(spool, expiry=1000)

    assert key_prefix is None  # the delivering run's IMAGE_KEY_PREFIX
    assert ttl == pytest.approx(900, abs=2)


def test_version_1_entry_has_the_same_shot_id_on_every_run(tmp_path):
    # A run killed between the delivery and the unlink leaves the entry: the next run must
    # find the shot under the id Redis already has, or it stores it twice.
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "1700000000-1-abcdef.jpg").write_bytes(b"\xff\xd8jpeg")
    (directory / "1700000000-1-abcdef.json").write_text(
        json.dumps({"timestamp": 1700000000, "mime_type": "image/jpeg", "lux": 3})
    )

    def shot_id_read_by_a_new_run() -> str:
        spool = Spool(directory, 10_000_000)
        [entry] = spool.entries()
        return spool.read(entry).fields[SHOT_ID]

    shot_id = shot_id_read_by_a_new_run()
    assert re.fullmatch(r"[0-9a-f]{16}", shot_id)
    assert shot_id_read_by_a_new_run() == shot_id


def test_version_1_entry_without_lux_is_delivered_with_no_reading(spool):
    now = int(time.time())
    (spool.directory / f"{now}-1-abcdef.jpg").write_bytes(b"\xff\xd8jpeg")
    (spool.directory / f"{now}-1-abcdef.json").write_text(
        json.dumps({"timestamp": now, "mime_type": "image/jpeg"})
    )

    [(fields, _prefix, _ttl)] = delivered_by(spool)

    assert fields["lux"] == NO_LUX


def test_unknown_format_is_set_aside_and_the_jpeg_kept(spool):
    now = int(time.time())
    (spool.directory / f"{now}-1-abcdef.jpg").write_bytes(b"\xff\xd8")
    (spool.directory / f"{now}-1-abcdef.json").write_text('{"version": 99, "fields": {}}')

    assert delivered_by(spool) == []
    assert (spool.directory / f"{now}-1-abcdef.json.unreadable").exists()
    assert (spool.directory / f"{now}-1-abcdef.jpg").exists()


def test_state_creates_nothing(tmp_path):
    spool = Spool(tmp_path / "not" / "yet", max_bytes=1000)

    assert spool.state() == "created by the first shot"
    assert not (tmp_path / "not").exists()


def test_spooled_files_take_the_umask_and_are_not_executable(spool):
    umask = os.umask(0o022)
    os.umask(umask)

    keeping.keep(spool, shot(1700000000))

    [entry] = spool.entries()
    for path in (entry.jpeg_path, entry.fields_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_state_counts_the_entries_set_aside(spool):
    keeping.keep(spool, shot(1700000000))
    keeping.keep(spool, shot(1700000001))
    spool.set_aside(spool.entries()[0], "damaged")

    assert spool.state() == "1 shot, 1 kB waiting; 1 set aside (*.json.unreadable)"
