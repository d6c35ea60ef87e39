"""snapcam.guard in-process: the shot held until Redis has it, the watchdog's ending, stop
signals deferred while a shot is saved, and the kernel's last-resort alarm."""

from __future__ import annotations

import os
import signal
import time

import pytest
from helpers import Exited, shot, spooled

from snapcam import keeping
from snapcam.errors import Interrupted
from snapcam.guard import LAST_RESORT_SECONDS, SAVE_SECONDS, Step

HUNG_CAPTURE = Step("capturing", os.EX_UNAVAILABLE, "check the camera's cable")


@pytest.fixture
def reports(guard) -> list:
    """What the guard reports as its watchdog ends the run: (line, exit code) each time."""
    lines: list = []
    guard.on_expire = lambda line, exit_code: lines.append((line, exit_code))
    return lines


def alarm_left() -> float:
    return signal.getitimer(signal.ITIMER_REAL)[0]


def test_held_shot_is_kept_in_the_spool_once(guard):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))

    first = guard.keep_unsaved()
    second = guard.keep_unsaved()

    assert first.startswith("; kept in spool")
    assert second == first
    assert len(spooled(guard.spool.directory)) == 1


def test_shot_redis_has_is_not_kept(guard):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))
    guard.release("image:1700000000", 1_700_000_000)

    assert guard.keep_unsaved() == ""
    assert spooled(guard.spool.directory) == []
    assert guard.stored_as == ("image:1700000000", 1_700_000_000)


def test_saving_a_shot_puts_off_the_last_resort_alarm_then_gives_it_back(guard, monkeypatch):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))
    during = []
    keep = keeping.keep
    monkeypatch.setattr(keeping, "keep", lambda *args: (during.append(alarm_left()), keep(*args)))
    signal.setitimer(signal.ITIMER_REAL, 4)

    guard.keep_unsaved()

    assert during[0] > SAVE_SECONDS - 1
    assert 3 < alarm_left() <= 4


def test_stop_signal_during_a_save_ends_the_run_once_the_shot_is_saved(guard, monkeypatch):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))
    keep = keeping.keep

    def signalled_mid_save(*args):
        guard.stop_on_signal(signal.SIGTERM, None)
        keep(*args)

    monkeypatch.setattr(keeping, "keep", signalled_mid_save)

    with pytest.raises(Interrupted) as stop:
        guard.keep_unsaved()

    assert stop.value.exit_code == 143
    assert len(spooled(guard.spool.directory)) == 1


def test_stop_signal_outside_a_save_ends_the_run_at_once(guard):
    with pytest.raises(Interrupted) as stop:
        guard.stop_on_signal(signal.SIGINT, None)

    assert stop.value.exit_code == 130


def test_stop_signal_once_the_outcome_is_decided_only_changes_the_exit_code(guard):
    guard.finishing = True

    guard.stop_on_signal(signal.SIGHUP, None)

    assert guard.exit_code(os.EX_OK) == 129


def test_exit_code_without_a_stop_signal_is_the_runs_own(guard):
    assert guard.exit_code(os.EX_TEMPFAIL) == os.EX_TEMPFAIL


def test_deadline_arms_the_last_resort_alarm_just_after_the_watchdog(guard):
    guard.start(30)

    assert 30 < alarm_left() <= 30 + LAST_RESORT_SECONDS


def test_deadline_never_arms_the_last_resort_alarm_before_a_save_ends(guard):
    guard.saving_until = time.monotonic() + 60

    guard.start(30)

    assert alarm_left() > 59


def test_watchdog_keeps_the_held_shot_and_ends_with_the_steps_code_and_hint(guard, reports):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))
    guard.step(HUNG_CAPTURE)

    with pytest.raises(Exited) as ended:
        guard.expire(5, "", 0)

    assert ended.value.exit_code == os.EX_UNAVAILABLE
    ((line, exit_code),) = reports
    assert line.startswith("run timed out after 5 s while capturing; kept in spool")
    assert line.endswith("; check the camera's cable")
    assert exit_code == os.EX_UNAVAILABLE
    assert len(spooled(guard.spool.directory)) == 1


def test_watchdog_after_redis_has_the_shot_ends_the_run_with_success(guard, reports):
    guard.step(HUNG_CAPTURE)
    guard.release("image:1700000000", 1_700_000_000)

    with pytest.raises(Exited) as ended:
        guard.expire(5, "", 0)

    assert ended.value.exit_code == os.EX_OK
    assert reports == [("run timed out after 5 s while capturing", os.EX_OK)]


def test_watchdog_with_its_own_reason_ends_with_its_own_code_and_line(guard, reports):
    guard.step(HUNG_CAPTURE)

    with pytest.raises(Exited) as ended:
        guard.expire(2, "stopped by SIGTERM", 143)

    assert ended.value.exit_code == 143
    assert reports == [("stopped by SIGTERM", 143)]


def test_watchdog_that_cannot_keep_the_shot_says_it_is_lost_and_still_ends_the_run(
    guard, tmp_path, reports
):
    (tmp_path / "spool").write_text("a file where the spool's directory should be")
    guard.hold(shot(1_700_000_000))
    guard.step(HUNG_CAPTURE)

    with pytest.raises(Exited) as ended:
        guard.expire(5, "", 0)

    assert ended.value.exit_code == os.EX_UNAVAILABLE
    ((line, _),) = reports
    assert line.startswith("run timed out after 5 s while capturing; the shot is lost: ")


def test_stop_signal_the_run_swallowed_ends_it_after_the_last_resort_delay(
    guard, monkeypatch, reports
):
    guard.finishing = True  # the signal is only noted: the run is left to end by itself
    exits = []
    monkeypatch.setattr(guard, "exit", exits.append)

    guard.stop_on_signal(signal.SIGTERM, None)
    guard.timer.join(LAST_RESORT_SECONDS + 30)

    assert reports == [("stopped by SIGTERM", 143)]
    assert exits == [143]


def test_stop_signal_after_a_save_ends_the_run_at_once(guard):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))
    guard.keep_unsaved()

    with pytest.raises(Interrupted):
        guard.stop_on_signal(signal.SIGTERM, None)


def test_saving_a_shot_arms_no_alarm_where_none_was(guard):
    guard.spool.prepare()
    guard.hold(shot(1_700_000_000))

    guard.keep_unsaved()

    assert alarm_left() == 0


def test_stop_signal_between_a_capture_and_its_hold_ends_the_run_once_the_shot_is_held(guard):
    guard.spool.prepare()
    guard.step(HUNG_CAPTURE)
    guard.captured = True  # the camera has handed the picture over

    guard.stop_on_signal(signal.SIGTERM, None)
    with pytest.raises(Interrupted) as stop:
        guard.hold(shot(1_700_000_000))

    assert stop.value.exit_code == 143
    assert guard.keep_unsaved().startswith("; kept in spool")
    assert len(spooled(guard.spool.directory)) == 1
