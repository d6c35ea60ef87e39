"""Waiting for auto-exposure to settle, as the camera reports it or as its frames show it."""

from __future__ import annotations

import concurrent.futures
import logging
import time

from .jobs import bounded, cancel_pending

log = logging.getLogger("snap")

# Exposure counts as settled once ExposureTime and AnalogueGain (and Lux) have not changed,
# within these fractions, over this many frames in a row.
STABLE_FRAMES = 5
STABLE_TOLERANCE = {"ExposureTime": 0.02, "AnalogueGain": 0.02, "Lux": 0.05}
# A camera that reports no exposure at all (USB): users report 10 to 25 frames before the
# picture is right.
UNREPORTED_SETTLE_FRAMES = 25


def steady(frames: list[dict], key: str) -> bool:
    values = [frame[key] for frame in frames if isinstance(frame.get(key), (int, float))]
    if len(values) < len(frames):
        return False
    low, high = min(values), max(values)
    allowed = STABLE_TOLERANCE[key] * abs(high)
    if key == "Lux":
        allowed = max(allowed, 1.0)  # a dark scene's Lux flickers by a unit or so
    return high - low <= allowed


def exposure_settled(frames: list[dict], count: int) -> bool:
    """Converged, as the camera reports it (AeState, or AeLocked before libcamera 0.5), or
    ExposureTime and AnalogueGain (and Lux where reported) unchanged over the last
    STABLE_FRAMES frames: the first Bookworm libcamera never sets AeLocked (picamera2 #908),
    and USB cameras report no state. A camera that reports no exposure at all is taken as
    settled after UNREPORTED_SETTLE_FRAMES frames. frames: the last few; count: all so far."""
    metadata = frames[-1]
    if metadata.get("AeState") == 2 or metadata.get("AeLocked") is True:
        return True
    if not any(key in metadata for key in ("ExposureTime", "AnalogueGain")):
        return count >= UNREPORTED_SETTLE_FRAMES
    recent = frames[-STABLE_FRAMES:]
    if len(recent) < STABLE_FRAMES:
        return False
    keys = [key for key in STABLE_TOLERANCE if key in metadata]
    return all(steady(recent, key) for key in keys)


def wait_for_exposure(picam2, timeout: float) -> tuple[bool, dict]:
    """Read frames until auto-exposure has settled: whether it did in time, and the last
    frame's metadata ({} if none came)."""
    deadline = time.monotonic() + timeout
    frames: list[dict] = []
    count = 0
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            metadata = bounded(picam2, picam2.capture_metadata, remaining)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return False, frames[-1] if frames else {}
        frames = [*frames[-(STABLE_FRAMES - 1) :], metadata]
        count += 1
        if exposure_settled(frames, count):
            log.debug("exposure settled on frame %d", count)
            return True, metadata
    return False, frames[-1] if frames else {}
