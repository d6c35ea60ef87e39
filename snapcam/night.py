"""The night profile: NIGHT_LUX and NIGHT_CONTROLS checked with the settings they depend on
(MIN_LUX, the autofocus, RUN_TIMEOUT against the longest frame the controls allow), the
profile a shot is taken with, and the switch to NIGHT_CONTROLS on the running camera.

The order of a run: exposure settles with CAMERA_CONTROLS; its lux below MIN_LUX skips the
shot; below NIGHT_LUX, NIGHT_CONTROLS are set on the running camera, exposure settles again
within NIGHT_SETTLE_TIMEOUT, and the shot is taken. Imports no module that touches the camera.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

from .controls import Parsed, check_autofocus, fixed_exposure, longest_frame_us, merged
from .errors import ConfigError
from .exposure import wait_for_exposure
from .jobs import bounded, cancel_pending
from .shot import NO_LUX, lux_reading

log = logging.getLogger("snap")

SETTING = "NIGHT_CONTROLS"
DAY, NIGHT = "day", "night"
# set_controls() on a running camera puts the controls in the next request picamera2
# re-queues (v0.3.12 picamera2.py set_controls and process_requests; v0.3.36 picamera2.py
# set_controls, request.py CompletedRequest.release), and libcamera applies them to the
# sensor some frames after that: "buffers+3 frames" (picamera2 #1278). With snap's one
# buffer, the frames read before this many are not yet taken with NIGHT_CONTROLS.
SWITCH_FRAMES = 4
# A capture gets the next frame to arrive: up to two frames' time when one is under way.
CAPTURE_FRAMES = 2


def check_night(values: dict[str, Any]) -> None:
    """The night settings against each other and the rest, before the camera. values: the
    settings by their lower-case names."""
    night_lux, night = values["night_lux"], values["night_controls"]
    if night_lux is not None and not night:
        raise ConfigError(
            f"NIGHT_LUX={night_lux} needs NIGHT_CONTROLS, the controls a night shot is taken "
            "with (e.g. AeExposureMode=Long,FrameDurationLimits=100000,1000000)"
        )
    if night and night_lux is None:
        raise ConfigError(
            "NIGHT_CONTROLS is set but NIGHT_LUX is not: set the lux below which they apply"
        )
    min_lux = values["min_lux"]
    if night_lux is not None and min_lux is not None and min_lux >= night_lux:
        raise ConfigError(
            f"MIN_LUX={min_lux} is not below NIGHT_LUX={night_lux}: no shot would be taken "
            "with NIGHT_CONTROLS; set MIN_LUX lower, or leave it empty"
        )
    check_autofocus(night, values["camera_autofocus"], SETTING)
    check_time(values)


def check_time(values: dict[str, Any]) -> None:
    """The waits a run cannot do without, with the longest frame the controls allow, must fit
    in RUN_TIMEOUT: the settling (and the autofocus cycle), then a capture of two such
    frames. Checked when the controls lengthen the frames or the night profile is on."""
    day, night = values["camera_controls"], values["night_controls"]
    frame = max(longest_frame_us(day), longest_frame_us(merged(day, night)) if night else 0)
    if not frame and not night:
        return
    waits = [("SETTLE_TIMEOUT", values["settle_timeout"])]
    if night:
        waits.append(("NIGHT_SETTLE_TIMEOUT", values["night_settle_timeout"]))
    if values["camera_autofocus"]:
        waits.append(("AUTOFOCUS_TIMEOUT", values["autofocus_timeout"]))
    needed = sum(seconds for _name, seconds in waits) + CAPTURE_FRAMES * frame / 1e6
    if needed >= values["run_timeout"]:
        named = ", ".join(f"{name} {seconds:g} s" for name, seconds in waits)
        source = SETTING if night and longest_frame_us(day) < frame else "CAMERA_CONTROLS"
        raise ConfigError(
            f"RUN_TIMEOUT={values['run_timeout']:g} is too short: {named} and a capture of "
            f"{CAPTURE_FRAMES} frames of up to {frame / 1e6:g} s ({source}) take {needed:g} s; "
            "raise RUN_TIMEOUT or allow shorter frames"
        )


def profile(night_lux: int | None, metadata: dict) -> str:
    """The profile the shot is taken with: "" when there is no night profile, DAY when the
    light is at NIGHT_LUX or more, or unknown (no frame, a camera without a lux reading)."""
    if night_lux is None:
        return ""
    lux = lux_reading(metadata)
    if lux == NO_LUX or lux >= night_lux:
        return DAY
    log.debug("lux %d < NIGHT_LUX %d: the shot is taken with NIGHT_CONTROLS", lux, night_lux)
    return NIGHT


def capture_timeout(capture_seconds: float, controls: Parsed) -> float:
    """CAPTURE_TIMEOUT, lengthened by the frames the controls in force allow."""
    return capture_seconds + CAPTURE_FRAMES * longest_frame_us(controls) / 1e6


def switch(picam2, config, night_controls: dict) -> Parsed:
    """Set NIGHT_CONTROLS on the running camera and wait, within NIGHT_SETTLE_TIMEOUT, until
    frames are taken with them and exposure has settled again (not waited for when the
    controls now in force fix the exposure); a warning if it did not in time. The controls
    now in force. config: the run's Config."""
    in_force = merged(config.camera_controls, config.night_controls)
    picam2.set_controls(night_controls)
    if not settled_again(picam2, fixed_exposure(in_force), config.night_settle_timeout):
        log.warning(
            "exposure did not settle with NIGHT_CONTROLS within %g s; capturing anyway",
            config.night_settle_timeout,
        )
    return in_force


def settled_again(picam2, fixed: bool, timeout: float) -> bool:
    """The frames read before SWITCH_FRAMES, then auto exposure's settling unless fixed."""
    deadline = time.monotonic() + timeout
    for _ in range(SWITCH_FRAMES):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            bounded(picam2, picam2.capture_metadata, remaining)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return False
    if fixed:
        return True
    settled, _metadata = wait_for_exposure(picam2, deadline - time.monotonic())
    return settled
