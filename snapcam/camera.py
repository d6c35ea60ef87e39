"""The camera, the picamera2 way: open, configure a still, start, settle, focus, capture, close.

Every wait on the camera is bounded: picamera2's own wait= timeouts for each step, and the
run's guard (its watchdog) for the steps picamera2 cannot bound, such as start().
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import time
from typing import TYPE_CHECKING

from .errors import CameraError
from .guard import Step
from .shot import NO_LUX, Shot, lux_reading

if TYPE_CHECKING:
    from .config import Config
    from .guard import Guard

log = logging.getLogger("snap")

NO_CAMERA_HINT = (
    "check the ribbon cable, camera_auto_detect=1 in config.txt and 'rpicam-hello --list-cameras'"
)
HUNG_NEXT_STEP = "check the ribbon cable and run: rpicam-hello --list-cameras"
BUSY_RETRY_SECONDS = 3.0
UNREPORTED_SETTLE_FRAMES = 5

# The camera's steps: a run that hangs in one is the camera's failure (exit 69).
OPENING = Step("opening the camera", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
STARTING = Step("starting the camera", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
SETTLING = Step("waiting for exposure to settle", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
FOCUSING = Step("autofocus", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
CAPTURING = Step("capturing", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
CLOSING = Step("closing the camera", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)


class TooDark(Exception):
    """The camera's lux is below MIN_LUX: no shot is taken."""

    def __init__(self, lux: int, min_lux: int):
        super().__init__(f"too dark (lux {lux} < MIN_LUX {min_lux})")
        self.lux = lux


def import_picamera2(verbose: bool):
    # libcamera reads its log level once, when it is loaded.
    if not verbose:
        os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:ERROR")
        logging.getLogger("picamera2").setLevel(logging.ERROR)
    try:
        import picamera2
    except ImportError as error:
        if error.name == "picamera2":  # the module itself, not one it imports
            raise CameraError(
                "picamera2 is not installed: sudo apt install python3-picamera2 (and make the "
                ".venv with --system-site-packages, which lets it see the package)"
            ) from error
        raise CameraError(broken_picamera2(error)) from error
    except Exception as error:  # e.g. numpy's "binary incompatibility" ValueError
        raise CameraError(broken_picamera2(error)) from error
    return picamera2


def broken_picamera2(error: Exception) -> str:
    """picamera2 is there but fails to import: what failed, and its likely cause."""
    import sys

    missing = getattr(error, "name", None) if isinstance(error, ImportError) else None
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    if "numpy" in f"{missing} {error}" and sys.prefix != sys.base_prefix:
        hint = (
            f"a numpy installed in {sys.prefix} is likely not the one the apt build was made "
            f"with: {sys.prefix}/bin/pip uninstall numpy, so that the system's is used"
        )
    elif missing:
        hint = (
            f"it needs {missing}, which this python cannot import: sudo apt install --reinstall "
            "python3-picamera2 installs what it depends on (and keep the .venv made with "
            "--system-site-packages)"
        )
    else:
        hint = "sudo apt install --reinstall python3-picamera2, or run with --verbose"
    return f"picamera2 is installed but fails to import ({reason}); {hint}"


def detected_cameras(picamera2) -> list[dict]:
    return picamera2.Picamera2.global_camera_info()


def is_busy(error: RuntimeError) -> bool:
    # picamera2 raises "Camera __init__ sequence did not complete" from libcamera's
    # "Failed to acquire camera: Device or resource busy".
    return "busy" in f"{error} {error.__cause__}"


def open_camera(picamera2, camera_num: int):
    """Picamera2(camera_num), retrying briefly while another program holds the camera."""
    cameras = detected_cameras(picamera2)
    if camera_num >= len(cameras):
        found = f"{len(cameras)} camera(s) found" if cameras else "no camera detected"
        raise CameraError(f"camera {camera_num} not available: {found}; {NO_CAMERA_HINT}")
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return picamera2.Picamera2(camera_num)
        except IndexError as error:  # picamera2 <= 0.3.36 when the camera is gone
            raise CameraError(f"no camera detected; {NO_CAMERA_HINT}") from error
        except RuntimeError as error:
            if not is_busy(error):
                cause = f" ({error.__cause__})" if error.__cause__ else ""
                raise CameraError(f"camera {camera_num} failed to open: {error}{cause}") from error
            if time.monotonic() > deadline:
                raise CameraError(
                    f"camera {camera_num} is busy: another program holds it "
                    "(rpicam-still, a preview, ...)"
                ) from error
            time.sleep(0.5)


def main_format(picamera2) -> str:
    """YUV420 takes half the memory of BGR888, but picamera2 encodes a JPEG from it only
    since 0.3.27, which brought CompletedRequest.FASTER_JPEG; Bullseye's is older."""
    if hasattr(getattr(picamera2, "CompletedRequest", None), "FASTER_JPEG"):
        return "YUV420"
    return "BGR888"


def configure_camera(picam2, config: Config, pixel_format: str) -> None:
    from libcamera import Transform

    main_stream = {"format": pixel_format}
    if config.size is not None:
        main_stream["size"] = config.size
    still = picam2.create_still_configuration(
        main=main_stream,
        raw=None,
        buffer_count=1,
        transform=Transform(hflip=config.camera_hflip, vflip=config.camera_vflip),
    )
    try:
        picam2.configure(still)
    except OSError as error:
        raise CameraError(
            f"not enough camera memory for {main_stream.get('size', 'full resolution')}: "
            "set IMAGE_WIDTH and IMAGE_HEIGHT lower or raise cma in config.txt"
        ) from error
    picam2.options["quality"] = config.jpeg_quality


def cancel_pending(picam2) -> None:
    """Drop the jobs a timeout or a signal left pending: they would block any later stop().

    Bullseye's picamera2 (0.3.12) lacks cancel_all_and_flush(), and has no timeouts either.
    """
    cancel = getattr(picam2, "cancel_all_and_flush", None)
    if cancel is not None:
        cancel()


def exposure_settled(metadata: dict, frames: int) -> bool:
    """Converged, as the camera reports it; a camera that reports no exposure state (USB
    cameras) is taken as settled after a few frames."""
    if "AeState" in metadata or "AeLocked" in metadata:
        return metadata.get("AeState") == 2 or metadata.get("AeLocked") is True
    return frames >= UNREPORTED_SETTLE_FRAMES


def wait_for_exposure(picam2, timeout: float) -> tuple[bool, dict]:
    """Read frames until auto-exposure has settled: whether it did in time, and the last
    frame's metadata ({} if none came)."""
    deadline = time.monotonic() + timeout
    frames = 0
    metadata: dict = {}
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            metadata = picam2.capture_metadata(wait=remaining)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return False, metadata
        frames += 1
        if exposure_settled(metadata, frames):
            log.debug("exposure settled on frame %d", frames)
            return True, metadata
    return False, metadata


def check_light(picam2, config: Config, metadata: dict) -> None:
    """TooDark when the camera's lux is below MIN_LUX; a camera without a lux reading passes.
    With SETTLE_TIMEOUT=0 no frame was read yet: one is read for its lux."""
    if config.settle_timeout == 0:
        try:
            metadata = picam2.capture_metadata(wait=config.capture_timeout)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return  # the capture that follows says the camera hung
    lux = lux_reading(metadata)
    if lux != NO_LUX and config.min_lux is not None and lux < config.min_lux:
        raise TooDark(lux, config.min_lux)


def autofocus(picam2, timeout: float) -> None:
    if "AfMode" not in picam2.camera_controls:
        log.warning("this camera has no autofocus; capturing without it")
        return
    try:
        focused = picam2.autofocus_cycle(wait=timeout)
    except concurrent.futures.TimeoutError:
        cancel_pending(picam2)
        log.warning("autofocus did not finish within %g s; capturing anyway", timeout)
        return
    if not focused:
        log.warning("autofocus failed; capturing anyway")


def capture(picam2, timeout: float) -> Shot:
    buffer = io.BytesIO()
    try:
        metadata = picam2.capture_file(buffer, format="jpeg", wait=timeout)
    except concurrent.futures.TimeoutError as error:
        raise CameraError(
            f"camera hung: no picture within {timeout:g} s", HUNG_NEXT_STEP
        ) from error
    # getbuffer(), not getvalue(): the JPEG reaches the socket without another copy.
    return Shot(jpeg=buffer.getbuffer(), metadata=metadata, timestamp=int(time.time()))


def take_shot(config: Config, guard: Guard, verbose: bool, on_capture=None) -> Shot:
    """The shot, handed to on_capture(shot) as soon as it exists, before the camera closes,
    so that whatever happens from then on (a hung close, a signal) cannot lose it."""
    picamera2 = import_picamera2(verbose)
    guard.step(OPENING)
    picam2 = open_camera(picamera2, config.camera_num)
    shot = None
    try:
        configure_camera(picam2, config, main_format(picamera2))
        guard.step(STARTING)
        picam2.start(show_preview=False)
        metadata: dict = {}
        if config.settle_timeout > 0:
            guard.step(SETTLING)
            settled, metadata = wait_for_exposure(picam2, config.settle_timeout)
            if not settled:
                log.warning(
                    "exposure did not settle within %g s; capturing anyway",
                    config.settle_timeout,
                )
        if config.min_lux is not None:
            guard.step(SETTLING)
            check_light(picam2, config, metadata)
        if config.camera_autofocus:
            guard.step(FOCUSING)
            autofocus(picam2, config.autofocus_timeout)
        guard.step(CAPTURING)
        shot = capture(picam2, config.capture_timeout)
        if on_capture is not None:
            on_capture(shot)
    except RuntimeError as error:
        cancel_pending(picam2)
        raise CameraError(f"camera failed: {error}") from error
    except BaseException:
        cancel_pending(picam2)
        raise
    finally:
        guard.step(CLOSING)
        try:
            picam2.close()
        except Exception as error:
            if shot is None:
                raise
            log.warning("the camera failed to close after the shot: %s", error)
    return shot
