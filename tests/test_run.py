"""snapcam.run in-process: the shot is held from the capture until Redis has it."""

from __future__ import annotations

import pytest
from helpers import shot

from snapcam.errors import SnapError
from snapcam.guard import Guard
from snapcam.run import shot_kept
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
