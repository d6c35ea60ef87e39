"""snapcam.watch in-process: how --status judges and prints one camera's status."""

from __future__ import annotations

from snapcam import watch


def test_status_a_little_ahead_is_taken_as_clock_drift():
    now = 1_700_000_000
    fields = {"last_stored": str(now + watch.FUTURE_TOLERANCE)}

    assert watch.assess("garden", fields, now, 300)["state"] == "ok"


def test_status_ahead_past_the_tolerance_is_flagged():
    now = 1_700_000_000
    fields = {"last_stored": str(now), "last_run": str(now + watch.FUTURE_TOLERANCE + 1)}

    assert watch.assess("garden", fields, now, 300)["state"] == "ahead"
