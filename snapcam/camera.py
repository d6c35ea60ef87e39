"""The camera, the picamera2 way: open, configure a still, start, settle, focus, capture, close.

Every wait on the camera is bounded: picamera2's own wait= timeouts for each step (from
0.3.20), an event its signal_function sets (before), and the run's guard (its watchdog) for
the steps picamera2 cannot bound, such as start(). docs/hardware.md: which picamera2 and
libcamera versions this follows, and how.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from . import night
from .controls import check_ranges, controls_text, fixed_exposure, resolve
from .errors import CameraError
from .exposure import wait_for_exposure
from .guard import Step
from .jobs import bounded, cancel_pending, has_timeouts
from .shot import NO_LUX, Shot, lux_reading
from .sink import JpegSink

if TYPE_CHECKING:
    from .config import Config
    from .guard import Guard

log = logging.getLogger("snap")


def hello_command() -> str:
    """rpicam-hello, or libcamera-hello on a Pi that has only that (Bullseye)."""
    if shutil.which("rpicam-hello") is None and shutil.which("libcamera-hello") is not None:
        return "libcamera-hello"
    return "rpicam-hello"


HELLO = hello_command()
NO_CAMERA_HINT = (
    f"check the ribbon cable, camera_auto_detect=1 in config.txt and '{HELLO} --list-cameras'"
)
HUNG_NEXT_STEP = f"check the ribbon cable and run: {HELLO} --list-cameras"
MEMORY_HINT = "set IMAGE_WIDTH and IMAGE_HEIGHT lower or raise cma in config.txt"
BUSY_RETRY_SECONDS = 3.0
# Frames read after an autofocus scan is cancelled, waiting for the lens to stop.
LENS_STOP_FRAMES = 10

# The camera's steps: a run that hangs in one is the camera's failure (exit 69).
OPENING = Step("opening the camera", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
STARTING = Step("starting the camera", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
SETTLING = Step("waiting for exposure to settle", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
NIGHT_SETTLING = Step("settling with NIGHT_CONTROLS", os.EX_UNAVAILABLE, HUNG_NEXT_STEP)
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


def is_busy(error: BaseException) -> bool:
    """picamera2 raises "Camera __init__ sequence did not complete" while handling libcamera's
    "Failed to acquire camera: Device or resource busy": as its __cause__ since 0.3.35, only
    as its __context__ before (Bullseye's 0.3.12 up to 0.3.34)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if "busy" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
                underlying = error.__cause__ or error.__context__
                cause = f" ({underlying})" if underlying else ""
                raise CameraError(f"camera {camera_num} failed to open: {error}{cause}") from error
            if time.monotonic() > deadline:
                raise CameraError(
                    f"camera {camera_num} is busy: another program holds it "
                    "(rpicam-still, a preview, ...)"
                ) from error
            time.sleep(0.5)


def main_format(picamera2) -> str:
    """YUV420 takes half the memory of BGR888, but picamera2 encodes a JPEG from it only
    since 0.3.26, which brought CompletedRequest.FASTER_JPEG; Bullseye's is older."""
    if hasattr(getattr(picamera2, "CompletedRequest", None), "FASTER_JPEG"):
        return "YUV420"
    return "BGR888"


def is_out_of_memory(error: BaseException) -> bool:
    """The camera's buffers did not fit: OSError ENOMEM from picamera2's DmaHeap (0.3.13 on),
    "Failed to allocate buffers." from 0.3.12's FrameBufferAllocator, or libcamera's
    "Failed to start camera: Cannot allocate memory" for its own buffers at start()."""
    text = str(error)
    return (
        (isinstance(error, OSError) and error.errno == errno.ENOMEM)
        or "Cannot allocate memory" in text
        or "Failed to allocate buffers" in text
    )


def out_of_memory(config: Config, error: BaseException) -> CameraError:
    size = "x".join(map(str, config.size)) if config.size else "full resolution"
    return CameraError(f"not enough camera memory for {size} ({error}); {MEMORY_HINT}")


def wanted_controls(picam2, config: Config) -> tuple[dict, dict]:
    """CAMERA_CONTROLS and NIGHT_CONTROLS as picamera2 takes them, checked against this
    camera's controls."""
    if not config.camera_controls and not config.night_controls:
        return {}, {}
    from libcamera import controls

    known = picam2.camera_controls
    return (
        resolve(config.camera_controls, known, controls),
        resolve(config.night_controls, known, controls, night.SETTING),
    )


def configure_camera(
    picam2, config: Config, pixel_format: str, controls: dict, night_controls: dict
) -> None:
    """A still with a raw stream and one buffer of each: on a Pi 0-4 libcamera then keeps no
    raw frames of its own (4 without a raw stream); docs/hardware.md has the arithmetic.
    The controls go in the configuration: configure() replaces any set before it, and
    start() hands these to the camera for its first frame (picamera2.py configure_, start_).
    Their ranges, and NIGHT_CONTROLS', are the sensor mode's once configured: checked then,
    before start()."""
    from libcamera import Transform

    main_stream = {"format": pixel_format}
    if config.size is not None:
        main_stream["size"] = config.size
    still = picam2.create_still_configuration(
        main=main_stream,
        buffer_count=1,
        transform=Transform(hflip=config.camera_hflip, vflip=config.camera_vflip),
        controls=dict(controls),
    )
    try:
        picam2.configure(still)
    except (OSError, RuntimeError) as error:
        if isinstance(error, OSError) or is_out_of_memory(error):
            raise out_of_memory(config, error) from error
        raise
    check_ranges(controls, picam2.camera_controls)
    check_ranges(night_controls, picam2.camera_controls, night.SETTING)
    picam2.options["quality"] = config.jpeg_quality
    flips = (getattr(picam2, "camera_config", None) or {}).get("transform")
    wanted = (config.camera_hflip, config.camera_vflip)
    if any(wanted) and flips is not None and (flips.hflip, flips.vflip) != wanted:
        # libcamera's uvcvideo pipeline sets any transform back to none (uvcvideo.cpp).
        log.warning("this camera ignores CAMERA_HFLIP and CAMERA_VFLIP; capturing unflipped")


def start_camera(picam2, config: Config) -> None:
    try:
        picam2.start(show_preview=False)
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise out_of_memory(config, error) from error
        raise


def check_light(picam2, config: Config, metadata: dict | None) -> dict:
    """TooDark when the camera's lux is below MIN_LUX; a camera without a lux reading passes.
    No metadata (no settling, or no frame came while it waited): one frame is read for its
    lux, as long as the controls let a frame take. The metadata the lux was read from ({}
    if none came, with a warning)."""
    if not metadata:
        timeout = night.capture_timeout(config.capture_timeout, config.camera_controls)
        try:
            metadata = bounded(picam2, picam2.capture_metadata, timeout)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            log.warning("no frame within %g s to read the light from: taken as enough", timeout)
            return {}
    lux = lux_reading(metadata)
    if lux != NO_LUX and config.min_lux is not None and lux < config.min_lux:
        raise TooDark(lux, config.min_lux)
    return metadata


def stop_autofocus(picam2, timeout: float) -> None:
    """Cancel a scan that outlived its timeout, so the lens stands still for the capture:
    AfTrigger=Cancel stops it where it is (libcamera control_ids_core.yaml). Then frames are
    read, for at most LENS_STOP_FRAMES and `timeout` s, until AfState leaves Scanning."""
    from libcamera import controls

    picam2.set_controls({"AfTrigger": controls.AfTriggerEnum.Cancel})
    if not has_timeouts(picam2):
        return  # the pending autofocus job itself ends once the scan has stopped
    cancel_pending(picam2)
    deadline = time.monotonic() + timeout
    for _ in range(LENS_STOP_FRAMES):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            metadata = bounded(picam2, picam2.capture_metadata, remaining)
        except concurrent.futures.TimeoutError:
            cancel_pending(picam2)
            return  # the capture that follows says the camera hung
        if metadata.get("AfState") != controls.AfStateEnum.Scanning:
            return


def autofocus(picam2, timeout: float, capture_timeout: float) -> None:
    if "AfMode" not in picam2.camera_controls:
        log.warning("this camera has no autofocus; capturing without it")
        return
    try:
        focused = bounded(picam2, picam2.autofocus_cycle, timeout)
    except concurrent.futures.TimeoutError:
        stop_autofocus(picam2, capture_timeout)
        log.warning("autofocus did not finish within %g s; capturing anyway", timeout)
        return
    if not focused:
        log.warning("autofocus failed; capturing anyway")


def capture(picam2, guard: Guard, timeout: float, controls: str = "", profile: str = "") -> Shot:
    sink = JpegSink(guard.picture_taken)  # the picture exists before picamera2 returns it
    try:
        metadata = bounded(
            picam2, lambda **wait: picam2.capture_file(sink, format="jpeg", **wait), timeout
        )
    except concurrent.futures.TimeoutError as error:
        raise CameraError(
            f"camera hung: no picture within {timeout:g} s", HUNG_NEXT_STEP
        ) from error
    except KeyError as error:
        # picamera2 0.3.26 and later: a stream format its JPEG encoder has no name for.
        raise unencodable(picam2, error) from error
    except RuntimeError as error:
        if "not supported" not in str(error):
            raise
        raise unencodable(picam2, error) from error
    return Shot(sink.jpeg(), metadata, int(time.time()), controls, profile)


def unencodable(picam2, error: Exception) -> CameraError:
    main = (getattr(picam2, "camera_config", None) or {}).get("main") or {}
    name = main.get("format") or (error.args[0] if error.args else error)
    return CameraError(
        f"this camera gives {name} pictures, which picamera2 cannot encode as JPEG; "
        "use a camera that offers MJPEG or YUV420"
    )


def take_shot(config: Config, guard: Guard, verbose: bool, on_capture=None, on_start=None) -> Shot:
    """The shot, handed to on_capture(shot) as soon as it exists, before the camera closes,
    so that whatever happens from then on (a hung close, a signal) cannot lose it.
    on_start() is called as the camera is about to start."""
    picamera2 = import_picamera2(verbose)
    guard.step(OPENING)
    picam2 = open_camera(picamera2, config.camera_num)
    shot = None
    try:
        controls, night_controls = wanted_controls(picam2, config)
        configure_camera(picam2, config, main_format(picamera2), controls, night_controls)
        guard.step(STARTING)
        if on_start is not None:
            on_start()
        start_camera(picam2, config)
        metadata: dict | None = None
        # With exposure and gain fixed by CAMERA_CONTROLS there is nothing to settle.
        if config.settle_timeout > 0 and not fixed_exposure(config.camera_controls):
            guard.step(SETTLING)
            settled, metadata = wait_for_exposure(picam2, config.settle_timeout)
            if not settled:
                log.warning(
                    "exposure did not settle within %g s; capturing anyway",
                    config.settle_timeout,
                )
        if config.min_lux is not None or config.night_lux is not None:
            guard.step(SETTLING)
            metadata = check_light(picam2, config, metadata)  # MIN_LUX first: darker skips
        profile = night.profile(config.night_lux, metadata or {})
        in_force = config.camera_controls
        if profile == night.NIGHT:
            guard.step(NIGHT_SETTLING)
            in_force = night.switch(picam2, config, night_controls)
            controls = {**controls, **night_controls}
        if config.camera_autofocus:
            guard.step(FOCUSING)
            autofocus(picam2, config.autofocus_timeout, config.capture_timeout)
        guard.step(CAPTURING)
        timeout = night.capture_timeout(config.capture_timeout, in_force)
        shot = capture(picam2, guard, timeout, controls_text(controls), profile)
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


def check_controls(config: Config, verbose: bool) -> tuple[str, str]:
    """--check with CAMERA_CONTROLS or NIGHT_CONTROLS: the camera opened and configured, never
    started, long enough to check them as a run would; both, as they would be applied."""
    from .locks import CameraLock

    picamera2 = import_picamera2(verbose)
    with CameraLock(config.lock_dir, config.camera_num, config.lock_timeout):
        picam2 = open_camera(picamera2, config.camera_num)
        try:
            controls, night_controls = wanted_controls(picam2, config)
            configure_camera(picam2, config, main_format(picamera2), controls, night_controls)
        except RuntimeError as error:
            raise CameraError(f"camera failed: {error}") from error
        finally:
            picam2.close()
    return controls_text(controls), controls_text(night_controls)
