"""snapcam.run in-process: the shot is held from the capture until Redis has it."""

from __future__ import annotations

import logging

import pytest
from helpers import shot

from snapcam import run
from snapcam.errors import SnapError
from snapcam.guard import Guard
from snapcam.run import shot_kept
from snapcam.shot import Shot
from snapcam.spool import Spool


def test_any_exception_after_the_capture_keeps_the_shot(tmp_path):
    guard = Guard(Spool(tmp_path / "spool", 10_000_000))
    guard.spool.prepare()

    with pytest.raises(SnapError) as raised:
        with shot_kept(guard):
            guard.hold(shot(1700000000, size=2))
            raise OverflowError("timeout value is too large")

    assert raised.value.exit_code == 70
    assert str(raised.value) == (
        "unexpected OverflowError: timeout value is too large; kept in spool (1 shot, 0 kB)"
    )
    assert len(guard.spool.entries()) == 1


def test_shot_is_held_before_its_first_line_is_logged(tmp_path, make_config, caplog):
    # A line can stall (a full pipe, journald busy) while a stop signal comes: by then the
    # guard must hold the shot, or nothing would keep it.
    config = make_config(CAMERA_METADATA="ExposureTime")
    guard = Guard(Spool(tmp_path / "spool", 10_000_000))
    held_when_logged = []
    caplog.set_level(logging.INFO, logger="snap")

    class Watching(logging.Handler):
        def emit(self, record):
            held_when_logged.append(guard.unsaved is not None)

    watching = Watching()
    logging.getLogger("snap").addHandler(watching)
    try:
        run.hold(guard, Shot(memoryview(b"\xff\xd8"), {}, 1700000000), config, dry_run=False)
    finally:
        logging.getLogger("snap").removeHandler(watching)

    assert held_when_logged == [True, True]  # no Lux; no ExposureTime


def test_held_shot_carries_the_key_prefix_and_expiry_it_was_taken_with(tmp_path, make_config):
    config = make_config(IMAGE_KEY_PREFIX="image:garden", IMAGE_EXPIRY="300")
    guard = Guard(Spool(tmp_path / "spool", 10_000_000))

    run.hold(guard, Shot(memoryview(b"\xff\xd8"), {"Lux": 5}, 1700000000), config, False)

    assert (guard.unsaved.key_prefix, guard.unsaved.expires_at) == ("image:garden", 1700000300)
