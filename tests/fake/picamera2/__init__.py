"""Test stand-in for picamera2: the same names, signatures and results, no hardware.

FAKE_PICAMERA2_VERSION, read once when picamera2 is imported, picks the picamera2 modelled:
0.3.38 (default, today's Bookworm/Trixie), 0.3.30 (Bookworm 2024-25), 0.3.19 (early
Bookworm) or 0.3.12 (Bullseye's apt package). What differs between them, with the picamera2
source each follows (tags of github.com/raspberrypi/picamera2; 0.3.38 is only on PyPI, its
code here is v0.3.36's unless said otherwise):
  - the busy error's chain: Picamera2() raises "Camera __init__ sequence did not complete."
    inside the `except` of libcamera's busy error, `from e` only since 0.3.35 (v0.3.35
    picamera2/picamera2.py, commit 4b92786; v0.3.12, v0.3.19, v0.3.30 picamera2.py: a bare
    raise, so the busy error is only the __context__)
  - wait=<seconds> is a timeout and cancel_all_and_flush()/Job.cancel() exist since 0.3.20
    (commit ddd2ca3); v0.3.12 and v0.3.19 picamera2.py dispatch_functions end in
    `job.get_result() if wait else job`: a number is taken as "wait, without limit"
  - Picamera2.wait(job) and Job.get_result() take a timeout since 0.3.17 (v0.3.19 job.py;
    v0.3.12 job.py has none)
  - JPEG straight from a YUV420 stream, and CompletedRequest.FASTER_JPEG, since 0.3.26
    (v0.3.26 request.py; v0.3.25 make_image raises "Stream format YUV420 not supported for
    PIL images"); since then a stream simplejpeg has no name for (YUYV) raises KeyError from
    save()'s FORMAT_TABLE (v0.3.30, v0.3.36 request.py)
  - buffers that do not fit: 0.3.12 allocates with libcamera.FrameBufferAllocator and raises
    RuntimeError("Failed to allocate buffers.") in configure() (v0.3.12 picamera2.py
    configure_); later versions allocate from /dev/dma_heap, whose ioctl raises OSError ENOMEM
    (v0.3.19 picamera2/dma_heap.py DmaHeap.alloc)
  - no camera: RuntimeError('No camera number 0 found ...') since 0.3.37 (0.3.38 wheel),
    IndexError before
  - signatures: __init__'s allocator=, wait()'s timeout=, create_still_configuration's
    sensor= and use_case=, capture_file's exif_data= since 0.3.17; configure()'s default
    "preview" became None by 0.3.25

Environment variables, read each time the fake is used:
  FAKE_CAMERA_MODEL   imx708 (default: Camera Module 3, autofocus), imx219 (no autofocus),
                      imx477 (HQ camera, no autofocus), uvc (USB camera: no autofocus, no
                      Lux, no raw stream, MJPEG) or uvc-yuyv (a USB camera with YUYV only)
  FAKE_CAMERA_PIPELINE  vc4 (default: Pi Zero to Pi 4) or pisp (Pi 5): which libcamera
                      pipeline's buffer rules FAKE_CAMERA_CMA_MB applies
  FAKE_CAMERA_CMA_MB  contiguous memory (CMA) left for the camera, in MB (default: no limit).
                      configure() allocates the streams' buffers from it, start() the
                      pipeline's internal raw buffers (see _internal_raw_buffers); what does
                      not fit fails as that picamera2 version and libcamera fail
  FAKE_CAMERA_FAULTS  comma-separated:
      absent        no camera: global_camera_info() is [], Picamera2() raises RuntimeError
      absent-old    the same, but Picamera2() raises IndexError as picamera2 <= 0.3.36 does
      no-lux        metadata without Lux
      nan-metadata  Lux NaN and ColourGains (inf, NaN), as a sensor in the dark may report
      never-settle  AeState stays 1 (searching) and exposure keeps changing
      ae-locked     old libcamera: AeLocked (False, then True) instead of AeState
      ae-unreported the first Bookworm libcamera (v0.1.0+rpt20231116/1122): AeLocked stays
                    False though exposure settles (fixed in v0.2.0+rpt20240215; picamera2
                    issue #908)
      af-fail       autofocus_cycle() returns False
      af-hang       autofocus_cycle() never completes: the lens scans until AfTrigger=Cancel
                    or AfMode=Manual ends the scan (the cycle then returns False)
      hang-capture  capture_file() never completes
      hang-start    start() never returns
      hang-close    close() never returns (after logging "close")
      hang-hard     the steps above hang where no exception or signal handler reaches them
      slow-return   capture_file() returns a second after it has written the JPEG (logging
                    "jpeg written"), widening the moment in which picamera2 has the picture
                    written and not yet returned
      dma-fail      configure() cannot allocate: OSError ENOMEM (RuntimeError on 0.3.12)
      before-0.3.27 an older picamera2: no CompletedRequest.FASTER_JPEG, and no JPEG from a
                    YUV420 stream ("Stream format YUV420 not supported ..."), as before 0.3.26
  FAKE_CAMERA_DIR     directory for camera<N>.lock (held from open to close), events.log and
                      started-with.json (the controls the last start() gave the camera)
  FAKE_CAMERA_TIMES   if set, each event is also logged in times.log after its time.time()
  FAKE_CAMERA_JPEG    file whose bytes capture_file writes instead of encoding an image
  FAKE_CAMERA_COUNT   number of cameras reported (default 1)
  FAKE_CAMERA_LUX     the scene's brightness: each frame's Lux is this plus 0, 0.5 or 1
                      (default 400, daylight; e.g. 3 for night)

Timing, like a sensor streaming frames: start() takes FAKE_CAMERA_START_SECONDS, then frame n
arrives n / FAKE_CAMERA_FPS seconds after start() returned. Each capture_metadata() and
capture_file() gets the next frame to arrive after the call (frames nobody asks for are dropped,
as with one buffer), and autofocus_cycle() takes two; a call whose frames would come later than
its wait= allows raises TimeoutError once that wait is over. Sleeps happen in the calling thread,
so signal handlers still run.
  FAKE_CAMERA_FPS            frames per second (default 30)
  FAKE_CAMERA_START_SECONDS  how long start() takes (default 0)
  FAKE_CAMERA_SETTLED_FRAME  the frame on which AeState reaches 2, converged (default 4)
"""

import atexit
import ctypes
import errno
import fcntl
import io
import json
import math
import os
import random
import signal
import tempfile
import threading
import time
from concurrent.futures import CancelledError as _CancelledError
from concurrent.futures import TimeoutError as _TimeoutError
from datetime import datetime
from pathlib import Path

import libcamera
from libcamera import ColorSpace, Transform
from PIL import Image, ImageFile, TiffImagePlugin

from .job import Job

FAULTS = {
    "absent",
    "absent-old",
    "no-lux",
    "nan-metadata",
    "never-settle",
    "ae-locked",
    "ae-unreported",
    "af-fail",
    "af-hang",
    "hang-capture",
    "hang-start",
    "hang-close",
    "hang-hard",
    "slow-return",
    "dma-fail",
    "before-0.3.27",
}


VERSIONS = ("0.3.12", "0.3.19", "0.3.30", "0.3.38")
VERSION = os.environ.get("FAKE_PICAMERA2_VERSION") or VERSIONS[-1]
if VERSION not in VERSIONS:
    raise ValueError(f"unknown FAKE_PICAMERA2_VERSION {VERSION!r}; modelled: {list(VERSIONS)}")
_V = tuple(int(part) for part in VERSION.split("."))
# The behaviours above, by the first version that has each.
TIMEOUTS = _V >= (0, 3, 20)  # wait=<seconds>, cancel_all_and_flush(), Job.cancel()
JOB_TIMEOUT = _V >= (0, 3, 17)  # Picamera2.wait(job, timeout), Job.get_result(timeout)
BUSY_FROM_E = _V >= (0, 3, 35)
FASTER_JPEG = _V >= (0, 3, 26) and "before-0.3.27" not in os.environ.get(
    "FAKE_CAMERA_FAULTS", ""
).split(",")
DMA_HEAP = _V >= (0, 3, 13)
NO_CAMERA_RUNTIME_ERROR = _V >= (0, 3, 37)
# A stream's keys (picamera2.py _update_stream_config / align_stream): v0.3.12 format and
# size; stride by v0.3.18; preserve_ar (and its defaults in each stream) since v0.3.25.
# picamera2 names concurrent.futures' TimeoutError and CancelledError since 0.3.20 (ddd2ca3).
if TIMEOUTS:
    TimeoutError = _TimeoutError
    CancelledError = _CancelledError
    __all__ = ["CancelledError", "CompletedRequest", "Picamera2", "TimeoutError"]
else:
    __all__ = ["CompletedRequest", "Picamera2"]
STREAM_KEYS = ("format", "size", "stride", "preserve_ar")[
    : 2 if _V < (0, 3, 17) else 3 if _V < (0, 3, 25) else 4
]
# The libcamera each picamera2 came out with on Pi OS (release dates): 0.3.12 with Bullseye's
# release-v0.0.5+83-bde9b04f, 0.3.19 with v0.3.0+rpt20240617, 0.3.30 with v0.5.1+rpt20250722,
# 0.3.38 with v0.7.1+rpt20260429. Up to v0.5.0+rpt20250429, vc4.cpp allocateBuffers keeps 2
# internal raw buffers even beside the application's raw stream while startup frames are
# dropped (dropFrameCount_, non-zero on a first start with auto exposure); from
# v0.5.1+rpt20250707 a raw stream in every request means none.
STARTUP_DROPS_NEED_RAW = _V < (0, 3, 30)


def _as_written(data, simplejpeg):
    """The JPEG file `data`, in the writes picamera2 makes of it. On the simplejpeg path
    (v0.3.26 request.py save()): one write or, for a file that begins with an APP1 (EXIF)
    segment, the three that splice it in: the head, the segment, then a slice of the rest
    (a copy, made as it is written). Else Pillow's blocks of ImageFile.MAXBLOCK bytes
    (ImageFile._save(); Pillow's own end where libjpeg stops, a little short of it)."""
    if not simplejpeg:
        for start in range(0, len(data), ImageFile.MAXBLOCK):
            yield data[start : start + ImageFile.MAXBLOCK]
    elif data[2:4] != b"\xff\xe1":
        yield data
    else:
        app1_end = 4 + int.from_bytes(data[4:6], "big")
        yield data[:6]
        yield data[6:app1_end]
        yield data[app1_end:]


def _spliced(jpeg, exif):
    """simplejpeg's JPEG as picamera2 writes it, the EXIF segment after its first two bytes
    (v0.3.26 request.py save())."""
    if not exif:
        return jpeg
    return jpeg[:2] + bytes.fromhex("ffe1") + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


class CompletedRequest:
    """Only the class attribute that tells picamera2 >= 0.3.26 apart (request.py)."""

    FASTER_JPEG = True  # set to False to use the older JPEG encode method


if not FASTER_JPEG:
    del CompletedRequest.FASTER_JPEG


FPS = 30.0  # frames per second, unless FAKE_CAMERA_FPS says otherwise
START_SECONDS = 0.0  # how long start() takes, unless FAKE_CAMERA_START_SECONDS says otherwise
SETTLED_FRAME = 4  # AeState reaches 2 (converged) on this frame after start(), by default
# set_controls() on a running camera: picamera2 hands the controls to the next request it
# re-queues (v0.3.12 picamera2.py set_controls, v0.3.36 request.py CompletedRequest.release),
# one buffer later, and libcamera's delayed controls reach the sensor a few frames after that
# (picamera2 #1278: "buffers+3 frames"). With one buffer: the 4th frame after the call.
SET_CONTROLS_DELAY_FRAMES = 4
# Controls that start auto exposure over when they reach the frames: AeState is 1 again for
# SETTLED_FRAME frames.
_EXPOSURE_CONTROLS = {
    "AeEnable", "AeExposureMode", "AeMeteringMode", "AeConstraintMode", "ExposureValue",
    "ExposureTime", "AnalogueGain", "FrameDurationLimits",
}  # fmt: skip
LUX = 400.0  # the scene's Lux, unless FAKE_CAMERA_LUX says otherwise

# What camera_controls holds: each control's (min, max, default), as picamera2 converts
# libcamera's ControlInfo (v0.3.12 ... v0.3.36 picamera2.py camera_controls). An enum's
# ControlInfo has its first and last values as min and max, and its first as the default
# unless one is given (src/libcamera/controls.cpp, ControlInfo(Span)). The Raspberry Pi IPA's
# controls before configure() (ipaControls, ipaColourControls, ipaAfControls in
# src/ipa/rpi/common/ipa_base.cpp, libcamera v0.7.1+rpt20260429); LensPosition's range is the
# imx708 tuning's lens limits, as a Camera Module 3 reports it.
_RPI_CONTROLS = {
    "AeConstraintMode": (0, 3, 0),
    "AeEnable": (False, True, True),
    "AeExposureMode": (0, 3, 0),
    "AeFlickerMode": (0, 1, 0),
    "AeFlickerPeriod": (100, 1000000, None),
    "AeMeteringMode": (0, 3, 0),
    "AnalogueGain": (1.0, 16.0, 1.0),
    "AnalogueGainMode": (0, 1, 0),
    "Brightness": (-1.0, 1.0, 0.0),
    "CnnEnableInputTensor": (False, True, False),
    "Contrast": (0.0, 32.0, 1.0),
    "ExposureTime": (1, 66666, 20000),
    "ExposureTimeMode": (0, 1, 0),
    "ExposureValue": (-8.0, 8.0, 0.0),
    "FrameDurationLimits": (33333, 250000000, (33333, 33333)),
    "HdrMode": (0, 4, 0),
    "NoiseReductionMode": (0, 4, 0),
    "Sharpness": (0.0, 16.0, 1.0),
    "StatsOutputEnable": (False, True, False),
    "SyncFrames": (100, 100000, 1000),
    "SyncMode": (0, 2, 0),
    # ipaColourControls
    "AwbEnable": (False, True, None),
    "AwbMode": (0, 7, 0),
    "ColourCorrectionMatrix": (0.0, 8.0, None),
    "ColourGains": (0.0, 32.0, None),
    "ColourTemperature": (100, 100000, None),
    "Saturation": (0.0, 32.0, 1.0),
}
_AF_CONTROLS = {
    "AfMetering": (0, 1, 0),
    "AfMode": (0, 2, 0),
    "AfPause": (0, 2, 0),
    "AfRange": (0, 2, 0),
    "AfSpeed": (0, 1, 0),
    "AfTrigger": (0, 1, 0),
    "AfWindows": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), [(0, 0, 0, 0)]),
    "LensPosition": (0.0, 15.0, 1.0),
}
# Controls the libcamera each picamera2 came with lacks (see STARTUP_DROPS_NEED_RAW below for
# which): ipa_base.cpp at release-v0.0.5+83-bde9b04f (0.3.12), v0.3.0+rpt20240617 (0.3.19),
# v0.5.1+rpt20250722 (0.3.30).
_NOT_YET = {
    (0, 3, 12): {
        "AeFlickerMode", "AeFlickerPeriod", "HdrMode", "StatsOutputEnable",
        "ExposureTimeMode", "AnalogueGainMode", "SyncMode", "SyncFrames",
        "CnnEnableInputTensor", "ColourTemperature", "ColourCorrectionMatrix",
    },
    (0, 3, 19): {
        "ExposureTimeMode", "AnalogueGainMode", "SyncMode", "SyncFrames",
        "CnnEnableInputTensor", "ColourTemperature", "ColourCorrectionMatrix",
    },
    (0, 3, 30): {"ColourCorrectionMatrix"},
}  # fmt: skip
# After configure() the IPA gives the sensor mode's own limits (ipa_base.cpp configure(): from
# the mode's frame lengths, the sensor's gain and exposure lines, and the imx708 helper's long
# exposure shift, cam_helper_imx708.cpp), and picamera2 reads camera_controls afresh
# (picamera2.py configure_). imx708's, as a Camera Module 3 reports them: ExposureTime from
# each mode's exposure_limits, the shortest frame from its fps; the longest frame is the full
# mode's reported 220535845 us, the smaller modes' taken as their longest exposure plus the
# same margin.
_IMX708_MODE_LIMITS = {
    (1536, 864): (9, 77208145, 8324),
    (2304, 1296): (13, 112015096, 17847),
    (4608, 2592): (26, 220416802, 69669),
}
_FRAME_MARGIN_US = 220535845 - 220416802
_UVC_CONTROLS = {
    "Brightness": (-1.0, 1.0, 0.0),
    "Contrast": (0.0, 2.0, 1.0),
    "Saturation": (0.0, 2.0, 1.0),
    "Sharpness": (0.0, 7.0, 3.0),
    "ExposureTimeMode": (0, 1, 0),
    "ExposureTime": (100, 500000, 15600),
}
MODELS = {
    "imx708": {
        "resolution": (4608, 2592),
        "sensor_format": "SRGGB10_CSI2P",
        "id": "/base/soc/i2c0mux/i2c@{bus}/imx708@1a",
        "rotation": 180,
        "controls": {**_RPI_CONTROLS, **_AF_CONTROLS},
        "mode_limits": _IMX708_MODE_LIMITS,
    },
    "imx219": {
        "resolution": (3280, 2464),
        "sensor_format": "SBGGR10_CSI2P",
        "id": "/base/soc/i2c0mux/i2c@{bus}/imx219@10",
        "rotation": 180,
        "controls": _RPI_CONTROLS,
    },
    "imx477": {
        "resolution": (4056, 3040),
        "sensor_format": "SRGGB12_CSI2P",
        "id": "/base/soc/i2c0mux/i2c@{bus}/imx477@1a",
        "rotation": 180,
        "controls": _RPI_CONTROLS,
    },
    "uvc": {
        "resolution": (1280, 720),
        "sensor_format": "MJPEG",
        "id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1.{bus}:1.0-0c45:636d",
        "rotation": 0,
        "controls": _UVC_CONTROLS,
    },
    "uvc-yuyv": {
        "resolution": (640, 480),
        "sensor_format": "YUYV",
        "id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1.{bus}:1.0-046d:0825",
        "rotation": 0,
        "controls": _UVC_CONTROLS,
    },
}
# The sensor modes a raw stream (or libcamera's own raw buffers) may take, smallest first,
# with bits per pixel of the packed CSI-2 format (libcamera's imx708, imx219 and imx477
# camera helpers and the kernel drivers' mode tables).
SENSOR_MODES = {
    "imx708": ([(1536, 864), (2304, 1296), (4608, 2592)], 10),
    "imx219": ([(640, 480), (1640, 1232), (1920, 1080), (3280, 2464)], 10),
    "imx477": ([(1332, 990), (2028, 1080), (2028, 1520), (4056, 3040)], 12),
}
MB = 1024 * 1024
_TRANSPOSE = getattr(Image, "Transpose", Image)  # Pillow < 9.1 has no Image.Transpose
_BYTES_PER_PIXEL = {"BGR888": 3, "RGB888": 3, "XBGR8888": 4, "XRGB8888": 4, "YUYV": 2}
_MAIN_FORMATS = {*_BYTES_PER_PIXEL, "YUV420", "YVU420", "NV12", "NV21", "MJPEG", "YUYV"}


def _faults():
    names = {f.strip() for f in os.environ.get("FAKE_CAMERA_FAULTS", "").split(",") if f.strip()}
    unknown = names - FAULTS
    if unknown:
        raise ValueError(f"unknown FAKE_CAMERA_FAULTS {sorted(unknown)}; known: {sorted(FAULTS)}")
    return names


def _model_name():
    name = os.environ.get("FAKE_CAMERA_MODEL", "imx708")
    if name not in MODELS:
        raise ValueError(f"unknown FAKE_CAMERA_MODEL {name!r}; known: {sorted(MODELS)}")
    return name


def _number(name, default, convert, low):
    text = os.environ.get(name, "")
    try:
        value = convert(text) if text else default
    except ValueError:
        value = None
    if value is None or not value >= low or math.isinf(value):
        raise ValueError(f"{name}={text!r}: expected a number of at least {low}")
    return value


def _timing():
    """Frames per second, seconds that start() takes, and the frame on which AE converges."""
    fps = _number("FAKE_CAMERA_FPS", FPS, float, 0.001)
    start_seconds = _number("FAKE_CAMERA_START_SECONDS", START_SECONDS, float, 0.0)
    settled_frame = _number("FAKE_CAMERA_SETTLED_FRAME", SETTLED_FRAME, int, 1)
    return fps, start_seconds, settled_frame


def _sleep_until(when):
    """Sleep until time.monotonic() reaches `when`; a signal handler that raises ends it."""
    while (left := when - time.monotonic()) > 0:
        time.sleep(left)


def _log_event(line):
    directory = os.environ.get("FAKE_CAMERA_DIR")
    if directory:
        with open(os.path.join(directory, "events.log"), "a") as log:
            log.write(line + "\n")
        if os.environ.get("FAKE_CAMERA_TIMES"):
            with open(os.path.join(directory, "times.log"), "a") as log:
                log.write(f"{time.time():.6f} {line}\n")


def _hang_hard():
    """Never return, like a driver call stuck in the kernel: Python handlers never run here."""
    handled = {s for s in signal.valid_signals() if callable(signal.getsignal(s))}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    libc = ctypes.CDLL(None)
    while True:
        try:
            libc.pause()
        except BaseException:
            pass


def _hang_forever():
    """Block like a wait on a result that never comes; a signal handler that raises ends it."""
    threading.Event().wait()


def _write_started_with(controls):
    """FAKE_CAMERA_DIR/started-with.json: the controls start() gave the camera, enums as
    their numbers (each start replaces it)."""
    directory = os.environ.get("FAKE_CAMERA_DIR")
    if directory:
        with open(os.path.join(directory, "started-with.json"), "w") as file:
            json.dump(controls, file, default=int)


def _cameras(faults):
    if faults & {"absent", "absent-old"}:
        return []
    name = _model_name()
    count = int(os.environ.get("FAKE_CAMERA_COUNT", "1"))
    buses = ([1, 0] + list(range(2, count)))[:count]
    cameras = [
        {
            "Model": name,
            "Location": 2,
            "Rotation": MODELS[name]["rotation"],
            "Id": MODELS[name]["id"].format(bus=bus),
            "Num": num,
        }
        for num, bus in enumerate(buses)
    ]
    # Same order as picamera2: USB cameras last, otherwise by Id, descending.
    return sorted(cameras, key=lambda cam: ("/usb" not in cam["Id"], cam["Id"]), reverse=True)


class Picamera2:
    @staticmethod
    def global_camera_info():
        _log_event("global_camera_info")
        return _cameras(_faults())

    if JOB_TIMEOUT:

        def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
            self._open(camera_num, tuning)

    else:  # v0.3.12 picamera2.py: no allocator

        def __init__(self, camera_num=0, verbose_console=None, tuning=None):
            self._open(camera_num, tuning)

    def _open(self, camera_num, tuning):
        self.is_open = False
        self.camera_config = None
        self.started = False
        self._event_loop = False
        self._lock_fd = None
        tuning_file = None
        if tuning is None:
            os.environ.pop("LIBCAMERA_RPI_TUNING_FILE", None)
        elif isinstance(tuning, str):
            os.environ["LIBCAMERA_RPI_TUNING_FILE"] = tuning
        else:
            tuning_file = tempfile.NamedTemporaryFile("w")
            json.dump(tuning, tuning_file)
            tuning_file.flush()
            os.environ["LIBCAMERA_RPI_TUNING_FILE"] = tuning_file.name
        self._faults = _faults()
        self._fps, self._start_seconds, self._settled_frame = _timing()
        self._lux = _number("FAKE_CAMERA_LUX", LUX, float, 0.0)
        cameras = _cameras(self._faults)
        if camera_num >= len(cameras) and (
            "absent-old" in self._faults or not NO_CAMERA_RUNTIME_ERROR
        ):
            raise IndexError("list index out of range")  # what picamera2 <= 0.3.36 raises
        if camera_num >= len(cameras):
            raise RuntimeError(
                f'No camera number {camera_num} found - use "rpicam-hello --list-cameras" '
                "to check connected cameras"
            )
        info = cameras[camera_num]
        self._num = info["Num"]
        self._id = info["Id"]
        model = MODELS[info["Model"]]
        self._usb = "/usb" in self._id
        self._ctrl_info = {
            name: limits
            for name, limits in model["controls"].items()
            if self._usb or name not in _NOT_YET.get(_V, ())
        }
        self._mode_limits = model.get("mode_limits", {})
        width, height = model["resolution"]
        if "ScalerCrop" not in self._ctrl_info and not self._usb:
            full = (0, 0, width, height)
            self._ctrl_info["ScalerCrop"] = ((0, 0, 64, 64), full, full)
        self._properties = {
            "Model": info["Model"],
            "Location": info["Location"],
            "Rotation": info["Rotation"],
            "PixelArraySize": (width, height),
            "PixelArrayActiveAreas": [(0, 0, width, height)],
        }
        if not self._usb:
            self._properties["ColorFilterArrangement"] = 0
        self.sensor_resolution = (width, height)
        self.sensor_format = model["sensor_format"]
        self.options = {}
        self._config = {}
        self._controls = {}
        self._jobs = []
        self._frame = 0
        self._pending = []  # (frame, controls): set_controls() not yet in the frames
        self._ae_from = 0  # the frame auto exposure last started converging from
        self._clock = 0.0  # frame n arrives at self._clock + n / self._fps (time.monotonic)
        self._af_state = libcamera.controls.AfStateEnum.Idle
        self._af_scan_frames = 0
        self._af_jobs = []  # autofocus cycles scanning until cancelled (af-hang)
        self._cma_used = 0
        self._lens_position = 1.0
        try:
            self._acquire()
        except Exception as e:
            if BUSY_FROM_E:
                raise RuntimeError("Camera __init__ sequence did not complete.") from e
            raise RuntimeError("Camera __init__ sequence did not complete.")  # noqa: B904
        finally:
            if tuning_file is not None:
                tuning_file.close()
        self.is_open = True
        _log_event(f"open {self._num}")
        atexit.register(self.close)

    def _acquire(self):
        directory = os.environ.get("FAKE_CAMERA_DIR")
        if not directory:
            return
        fd = os.open(os.path.join(directory, f"camera{self._num}.lock"), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            _log_event(f"busy {self._num}")
            raise RuntimeError("Failed to acquire camera: Device or resource busy") from None
        self._lock_fd = fd

    @property
    def camera_properties(self):
        return dict(self._properties) if self.is_open else {}

    @property
    def camera_controls(self):
        return dict(self._ctrl_info) if self.is_open else {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_traceback):
        self.close()

    def __del__(self):
        if getattr(self, "is_open", False):
            self.close()

    @staticmethod
    def _stream(initial, updates, ignore=()):
        if updates is None:
            return None
        valid = STREAM_KEYS
        for key, value in updates.items():
            if key in valid:
                initial[key] = value
            elif key not in ignore:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        return initial

    @staticmethod
    def _make_even(stream):
        if stream is not None:
            width, height = stream["size"]
            stream["size"] = (width - width % 2, height - height % 2)

    # The defaults are picamera2's own, so that the signatures compare equal.
    if JOB_TIMEOUT:

        def create_still_configuration(
            self,
            main={},  # noqa: B006
            lores=None,
            raw={},  # noqa: B006
            transform=Transform(),  # noqa: B008
            colour_space=ColorSpace.Sycc(),  # noqa: B008
            buffer_count=1,
            controls={},  # noqa: B006
            display=None,
            encode=None,
            queue=True,
            sensor={},  # noqa: B006
            use_case="still",
        ):
            return self._still_configuration(
                main, lores, raw, transform, colour_space, buffer_count, controls, display,
                encode, queue, sensor, use_case,
            )  # fmt: skip

    else:  # v0.3.12 picamera2.py: no sensor= or use_case=

        def create_still_configuration(
            self,
            main={},  # noqa: B006
            lores=None,
            raw={},  # noqa: B006
            transform=Transform(),  # noqa: B008
            colour_space=ColorSpace.Sycc(),  # noqa: B008
            buffer_count=1,
            controls={},  # noqa: B006
            display=None,
            encode=None,
            queue=True,
        ):
            return self._still_configuration(
                main, lores, raw, transform, colour_space, buffer_count, controls, display,
                encode, queue, {}, "still",
            )  # fmt: skip

    def _still_configuration(
        self, main, lores, raw, transform, colour_space, buffer_count, controls, display,
        encode, queue, sensor, use_case,
    ):  # fmt: skip
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        if self._usb:
            raw = None
            sensor = None
        aspect = {"preserve_ar": True} if "preserve_ar" in STREAM_KEYS else {}
        main = self._stream({"format": "BGR888", "size": self.sensor_resolution, **aspect}, main)
        self._make_even(main)
        aspect = {"preserve_ar": False} if aspect else {}
        lores = self._stream({"format": "YUV420", "size": main["size"], **aspect}, lores)
        self._make_even(lores)
        raw_ignore = ("bit_depth", "crop_limits", "exposure_limits", "fps", "unpacked")
        raw = self._stream({"format": self.sensor_format, "size": main["size"]}, raw, raw_ignore)
        if "NoiseReductionMode" in self._ctrl_info and "FrameDurationLimits" in self._ctrl_info:
            controls = {
                "NoiseReductionMode": libcamera.controls.draft.NoiseReductionModeEnum.HighQuality,
                "FrameDurationLimits": (100, 1000000 * 1000),
                **controls,
            }
        config = {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": controls,
            "sensor": sensor,
        }
        if not JOB_TIMEOUT:  # v0.3.12 picamera2.py: no sensor configuration
            del config["sensor"]
        if display is not None and config.get(display) is None:
            raise RuntimeError(f"Display stream {display} was not defined")
        if encode is not None and config.get(encode) is None:
            raise RuntimeError(f"Encode stream {encode} was not defined")
        config["display"] = display
        config["encode"] = encode
        return config

    def _named_config(self, name):
        if name == "still":
            return self.create_still_configuration()
        size, buffers = ((1280, 720), 6) if name == "video" else ((640, 480), 4)
        return self.create_still_configuration(
            main={"format": "XBGR8888", "size": size},
            buffer_count=buffers,
            display="main",
            encode="main",
            use_case=name if name == "video" else "preview",
        )

    def _apply_controls(self, controls):
        for name in controls:
            if name not in self._ctrl_info:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        self._controls.update(controls)
        enums = libcamera.controls
        if "AfMode" in controls and controls["AfMode"] == enums.AfModeEnum.Continuous:
            self._af_state = enums.AfStateEnum.Scanning
            self._af_scan_frames = 2
        cancel = controls.get("AfTrigger") == enums.AfTriggerEnum.Cancel or (
            controls.get("AfMode") == enums.AfModeEnum.Manual
        )
        if cancel and self._af_state == enums.AfStateEnum.Scanning:
            self._cancel_scan()
        # LensPosition is ignored unless AfMode is Manual, the default (control_ids_core.yaml
        # LensPosition, libcamera v0.7.1+rpt20260429).
        manual = self._controls.get("AfMode", enums.AfModeEnum.Manual) == enums.AfModeEnum.Manual
        if "LensPosition" in controls and manual:
            self._lens_position = float(controls["LensPosition"])

    def _cancel_scan(self):
        """AfTrigger=Cancel (or AfMode=Manual) stops a scan where the lens is, and AfState
        goes to Idle (libcamera control_ids_core.yaml AfTrigger; src/ipa/rpi/controller/rpi/
        af.cpp triggerScan/setMode). picamera2's autofocus_cycle job waits for AfState to
        leave Scanning and then returns whether it is Focused (v0.3.12 ... v0.3.36
        picamera2.py autofocus_cycle): a pending cycle ends with False."""
        self._af_state = libcamera.controls.AfStateEnum.Idle
        self._af_scan_frames = 0
        _log_event("autofocus cancelled")
        for job in self._af_jobs:
            if job in self._jobs:
                self._jobs.remove(job)
                job._finish(False)
        self._af_jobs = []

    if _V >= (0, 3, 25):

        def configure(self, camera_config=None):
            self._configure(camera_config)

    else:  # v0.3.12 and v0.3.19 picamera2.py

        def configure(self, camera_config="preview"):
            self._configure(camera_config)

    def _configure(self, camera_config):
        _log_event("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None:
            camera_config = "preview"
        if isinstance(camera_config, str):
            camera_config = self._named_config(camera_config)
        if not isinstance(camera_config, dict):
            raise TypeError("Invalid type for `camera_config` given")
        config = camera_config.copy()
        if self._usb:
            config["raw"] = None
        self._config = {}
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        if not isinstance(config["colour_space"], ColorSpace):
            raise RuntimeError("Colour space has incorrect type")
        if not isinstance(config["transform"], Transform):
            raise RuntimeError("Transform has incorrect type")
        main = config["main"]
        self._check_stream(main, "main")
        for name in ("lores", "raw"):
            if config[name] is not None:
                self._check_stream(config[name], name)
        # The ISP cannot transpose; libcamera adjusts the configuration without raising.
        flips = config["transform"]
        config["transform"] = Transform(hflip=flips.hflip, vflip=flips.vflip)
        if self._usb:
            # libcamera's uvcvideo pipeline sets any orientation back to Rotate0 in validate()
            # (v0.7.1+rpt20260429 src/libcamera/pipeline/uvcvideo/uvcvideo.cpp), and picamera2
            # copies it back into camera_config (v0.3.36 picamera2.py _update_camera_config).
            config["transform"] = Transform()
        if self._usb:
            # What libcamera's uvcvideo pipeline settles on: the camera's own format.
            main["format"] = self.sensor_format
        for stream in (main, config["lores"]):
            if stream is not None:
                self._set_stride(stream)
        mode, bits = self._sensor_mode(main["size"])
        if config["raw"] is not None:
            config["raw"]["size"] = mode
            config["raw"]["stride"], config["raw"]["framesize"] = self._raw_frame(mode, bits)
        if not self._usb:
            config["sensor"] = {"bit_depth": bits, "output_size": mode}
        if mode in self._mode_limits:
            shortest_exposure, longest_exposure, shortest_frame = self._mode_limits[mode]
            self._ctrl_info["ExposureTime"] = (shortest_exposure, longest_exposure, 20000)
            self._ctrl_info["AnalogueGain"] = (1.1228070259094238, 16.0, 1.0)
            frame = (shortest_frame, longest_exposure + _FRAME_MARGIN_US, (33333, 33333))
            self._ctrl_info["FrameDurationLimits"] = frame
        buffer_count = config.get("buffer_count", 1)
        streams = [config[name] for name in ("main", "lores", "raw") if config[name] is not None]
        needed = sum(stream["framesize"] for stream in streams) * buffer_count
        if "dma-fail" in self._faults or needed > self._cma_budget():
            _log_event("configure: out of memory")
            self._allocation_failed()
        self._cma_used = needed
        # picamera2 marks itself configured before it checks the controls.
        self._config = config
        self.camera_config = config  # what libcamera settled on (_update_camera_config)
        self._controls = {}
        self._apply_controls(config.get("controls") or {})

    @staticmethod
    def _set_stride(stream):
        width, height = stream["size"]
        bytes_per_pixel = _BYTES_PER_PIXEL.get(stream["format"])
        if bytes_per_pixel:
            stream["stride"] = -(-width * bytes_per_pixel // 64) * 64
            stream["framesize"] = stream["stride"] * height
        else:  # planar YUV 4:2:0
            stream["stride"] = -(-width // 64) * 64
            stream["framesize"] = stream["stride"] * height * 3 // 2

    def _sensor_mode(self, size):
        """The smallest sensor mode that covers `size`, or the largest, and its bits per pixel:
        libcamera picks the raw mode from the output size (CameraData::findBestMode in
        pipeline/rpi/common/pipeline_base.cpp scores modes by how close they are)."""
        modes, bits = SENSOR_MODES.get(self._properties["Model"], ([self.sensor_resolution], 8))
        for mode in modes:
            if mode[0] >= size[0] and mode[1] >= size[1]:
                return mode, bits
        return modes[-1], bits

    @staticmethod
    def _pipeline():
        name = os.environ.get("FAKE_CAMERA_PIPELINE", "vc4")
        if name not in ("vc4", "pisp"):
            raise ValueError(f"unknown FAKE_CAMERA_PIPELINE {name!r}; known: ['pisp', 'vc4']")
        return name

    def _raw_frame(self, mode, bits):
        """Stride and size of one raw frame: Unicam's packed CSI-2 lines on vc4, aligned to
        32 bytes (vc4.cpp, unicam's bytesperline alignment); on pisp the CFE writes its
        compressed 8 bits per pixel format (PISP_COMP1, pisp.cpp), also 32-byte aligned."""
        width, height = mode
        line = width if self._pipeline() == "pisp" else -(-width * bits // 8)
        stride = -(-line // 32) * 32
        return stride, stride * height

    def _cma_budget(self):
        text = os.environ.get("FAKE_CAMERA_CMA_MB", "")
        return math.inf if not text else _number("FAKE_CAMERA_CMA_MB", 0.0, float, 0.0) * MB

    def _allocation_failed(self):
        if DMA_HEAP:  # v0.3.19 picamera2/dma_heap.py: DmaHeap.alloc's ioctl fails
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
        # v0.3.12 picamera2.py configure_: libcamera.FrameBufferAllocator.allocate() < 0
        raise RuntimeError("Failed to allocate buffers.")

    def _internal_raw_buffers(self):
        """How many raw frames libcamera allocates for itself at start() (allocateBuffers).

        vc4 (Pi 0-4), v0.7.1+rpt20260429 src/libcamera/pipeline/rpi/vc4/vc4.cpp with the
        rpi_apps.yaml picamera2 selects (picamera2/__init__.py at v0.3.12 to v0.3.36;
        min_unicam_buffers 2, min_total_unicam_buffers 4, raw_mandatory_stream true; the same
        in release-v0.0.5+83-bde9b04f and v0.1.0+rpt20231122): none when the application has
        a raw stream, else max(2, 4 - 0) = 4; with an older libcamera (STARTUP_DROPS_NEED_RAW)
        2 beside a raw stream. pisp (Pi 5), pisp/pisp.cpp: max(2, 4 - the raw stream's
        buffers) either way. ISP outputs the application does not hold take one small buffer
        each, left out here.
        """
        raw = self._config.get("raw")
        raw_buffers = self._config.get("buffer_count", 1) if raw is not None else 0
        if self._pipeline() == "pisp":
            return max(2, 4 - raw_buffers)
        if raw_buffers and STARTUP_DROPS_NEED_RAW:
            return max(2, 2 - raw_buffers)
        return 0 if raw_buffers else max(2, 4 - raw_buffers)

    @staticmethod
    def _check_stream(stream, name):
        if type(stream) is not dict:
            raise RuntimeError(name + " stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream:
                raise RuntimeError(f"{key} not found in {name} stream")
        if name != "raw" and stream["format"] not in _MAIN_FORMATS:
            raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
        size = stream["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def set_controls(self, controls):
        """Before start(), the controls go to camera.start() for the first frame; on a running
        camera they reach the frames SET_CONTROLS_DELAY_FRAMES later. Autofocus triggers are
        applied at once here (the autofocus cycle's model follows AfState, not frames)."""
        _log_event("set_controls")
        for name in controls:
            if name not in self._ctrl_info:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        later = {name: value for name, value in controls.items() if not name.startswith("Af")}
        if not self.started or not later:
            self._apply_controls(controls)
            return
        self._apply_controls({k: v for k, v in controls.items() if k not in later})
        self._pending.append((self._frame + SET_CONTROLS_DELAY_FRAMES, later))

    def _apply_pending(self, number, when):
        """The controls set while running that reach frame `number`, which arrived at `when`:
        the frames after it come at the length those controls give them."""
        reached = [controls for frame, controls in self._pending if frame <= number]
        self._pending = [(frame, c) for frame, c in self._pending if frame > number]
        for controls in reached:
            self._apply_controls(controls)
            if _EXPOSURE_CONTROLS & set(controls):
                self._ae_from = number
        if reached:
            self._clock = when - number * self._frame_seconds()

    def _hang(self):
        if "hang-hard" in self._faults:
            _hang_hard()
        _hang_forever()

    def start(self, config=None, show_preview=False):
        _log_event("start")
        if not self._config and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        if "hang-start" in self._faults:
            self._hang()
        if not self.started and not self._usb:
            mode, bits = self._sensor_mode(self._config["main"]["size"])
            internal = self._internal_raw_buffers() * self._raw_frame(mode, bits)[1]
            if self._cma_used + internal > self._cma_budget():
                # v0.7.1+rpt20260429 pipeline_base.cpp start(): allocateBuffers() fails;
                # src/py/libcamera/py_main.cpp: std::system_error(-ret, "Failed to start camera")
                _log_event("start: out of memory")
                raise RuntimeError("Failed to start camera: Cannot allocate memory")
        # show_preview=None starts no event loop, so no capture ever completes.
        if show_preview is not None:
            self._event_loop = True
        if not self.started:
            # picamera2 hands the controls it holds to camera.start(), so that the first frame
            # has them (v0.3.12, v0.3.36 picamera2.py start_).
            _write_started_with(self._controls)
            ready = time.monotonic() + self._start_seconds
            _sleep_until(ready)
            self.started = True
            self._frame = 0
            self._ae_from = 0
            self._clock = ready

    def stop(self):
        _log_event("stop")
        self._stop()

    def _stop(self):
        if not self.started:
            return
        if self._event_loop and self._jobs:
            _hang_forever()  # the stop request queues behind a job that never finishes
        self.started = False

    def close(self):
        atexit.unregister(self.close)
        # The event loop is stopped first, so stop() below cannot queue behind a stuck job.
        self._event_loop = False
        if not self.is_open:
            return
        _log_event("close")
        if "hang-close" in self._faults:
            self._hang()
        self._stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.is_open = False
        self._config = {}

    if TIMEOUTS:

        def cancel_all_and_flush(self):
            _log_event("cancel_all_and_flush")
            for job in self._jobs:
                job.cancel()
            self._jobs = []

    if JOB_TIMEOUT:

        def wait(self, job, timeout=None):
            return job.get_result(timeout=timeout)

    else:  # v0.3.12 picamera2.py

        def wait(self, job):
            return job.get_result()

    def _dispatch(self, work, wait, signal_function, hangs=False, frames=1):
        """Run `work`, which takes the next `frames` frames, as picamera2 runs a job."""
        if wait is None:
            wait = signal_function is None
        if wait is not True and wait and not TIMEOUTS:
            wait = True  # v0.3.12/v0.3.19 dispatch_functions: any true wait waits for good
        job = Job(signal_function)
        if hangs or self._jobs or not (self.started and self._event_loop):
            if hangs and "hang-hard" in self._faults:
                job._hard_hang = _hang_hard
            self._jobs.append(job)
        else:
            if wait is not True and wait:
                deadline = time.monotonic() + wait
                if self._next_frame_due(frames)[1] > deadline:
                    _sleep_until(deadline)
                    raise _TimeoutError()
            try:
                result = work()
            except Exception as e:
                job._finish(error=e)
            else:
                job._finish(result)
        if not wait:
            return job
        if wait is True:
            return job._result()
        return job.get_result(timeout=wait)

    def capture_metadata(self, wait=None, signal_function=None):
        _log_event("capture_metadata")
        return self._dispatch(self._next_frame, wait, signal_function)

    def autofocus_cycle(self, wait=None, signal_function=None):
        _log_event("autofocus_cycle")
        states = libcamera.controls.AfStateEnum
        self._apply_controls(
            {
                "AfMode": libcamera.controls.AfModeEnum.Auto,
                "AfTrigger": libcamera.controls.AfTriggerEnum.Start,
            }
        )

        def cycle():
            self._af_state = states.Scanning
            self._next_frame()
            if "af-fail" in self._faults:
                self._af_state = states.Failed
            else:
                self._af_state = states.Focused
                self._lens_position = 2.5
            self._next_frame()
            return self._af_state == states.Focused

        hangs = "af-hang" in self._faults
        if hangs:
            self._af_state = states.Scanning  # and it goes on scanning
        result = self._dispatch(cycle, wait, signal_function, hangs=hangs, frames=2)
        if hangs and isinstance(result, Job):
            self._af_jobs.append(result)
        return result

    if JOB_TIMEOUT:

        def capture_file(
            self,
            file_output,
            name="main",
            format=None,
            wait=None,
            signal_function=None,
            exif_data=None,
        ):
            return self._capture_file(file_output, name, format, wait, signal_function, exif_data)

    else:  # v0.3.12 picamera2.py: no exif_data

        def capture_file(
            self, file_output, name="main", format=None, wait=None, signal_function=None
        ):
            return self._capture_file(file_output, name, format, wait, signal_function, None)

    def _capture_file(self, file_output, name, format, wait, signal_function, exif_data):
        _log_event("capture_file")
        if self._af_state == libcamera.controls.AfStateEnum.Scanning and not self._af_scan_frames:
            _log_event("capture_file while the lens is moving")

        def capture():
            metadata = self._next_frame()
            self._save(name, file_output, format, exif_data, metadata)
            if "slow-return" in self._faults:
                _log_event("jpeg written")
                time.sleep(1)
            return metadata

        return self._dispatch(capture, wait, signal_function, hangs="hang-capture" in self._faults)

    def _exposure_us(self):
        """The ExposureTime set, cut to the longest frame FrameDurationLimits allows; None
        while auto exposure chooses."""
        exposure = self._controls.get("ExposureTime")
        limits = self._controls.get("FrameDurationLimits")
        if exposure and limits:
            exposure = min(exposure, limits[1])
        return exposure or None

    def _frame_seconds(self):
        """One frame's length: the frame rate's, made longer by FrameDurationLimits' minimum or
        by an exposure that does not fit in it. The IPA lengthens the frame to hold the
        exposure, within FrameDurationLimits (ipa_base.cpp applyFrameDurations and
        cam_helper.cpp CamHelper::getBlanking, libcamera v0.7.1+rpt20260429)."""
        seconds = 1 / self._fps
        limits = self._controls.get("FrameDurationLimits")
        if limits:
            seconds = max(seconds, limits[0] / 1e6)
        exposure = self._exposure_us()
        return max(seconds, exposure / 1e6) if exposure else seconds

    def _next_frame_due(self, ahead=1):
        """The number and the time.monotonic() time of the `ahead`-th frame still to come."""
        period = self._frame_seconds()
        arrived = math.floor((time.monotonic() - self._clock) / period)
        number = max(self._frame, arrived) + ahead
        return number, self._clock + number * period

    def _next_frame(self):
        number, due = self._next_frame_due()
        _sleep_until(due)
        passed, self._frame = number - self._frame, number
        self._apply_pending(number, due)
        timestamp = int(due * 1e9)
        if self._usb:
            return {"SensorTimestamp": timestamp}
        converging = self._frame - self._ae_from
        settled = converging >= self._settled_frame and "never-settle" not in self._faults
        progress = 1.0 if settled else converging / self._settled_frame
        if "never-settle" in self._faults:
            progress = 0.5 + 0.25 * (self._frame % 3)  # exposure that goes on hunting
        # What was set reaches the frames; auto exposure and white balance choose the rest.
        exposure = self._exposure_us() or int(20000 * (0.4 + 0.6 * progress))
        gain = self._controls.get("AnalogueGain") or round(1.0 + progress, 4)
        colour_gains = tuple(self._controls.get("ColourGains") or (2.05, 1.72))
        metadata = {
            "Lux": self._lux + 0.5 * (self._frame % 3),
            "ExposureTime": int(exposure),
            "AnalogueGain": float(gain),
            "DigitalGain": 1.0034,
            "ColourTemperature": 5200,
            "ColourGains": tuple(float(gain) for gain in colour_gains),
            "ColourCorrectionMatrix": (1.72, -0.53, -0.19, -0.38, 1.66, -0.28, 0.02, -0.61, 1.59),
            "SensorBlackLevels": (4096, 4096, 4096, 4096),
            "FrameDuration": round(1e6 * self._frame_seconds()),
            "SensorTimestamp": timestamp,
            "ScalerCrop": (0, 0) + self.sensor_resolution,
            "FocusFoM": 1200 + 10 * self._frame,
        }
        if "ae-unreported" in self._faults:
            metadata["AeLocked"] = False
        elif "ae-locked" in self._faults:
            metadata["AeLocked"] = settled
        else:
            metadata["AeState"] = 2 if settled else 1
            metadata["FrameWallClock"] = time.time_ns()
        if "no-lux" in self._faults:
            del metadata["Lux"]
        if "nan-metadata" in self._faults:
            metadata["Lux"] = math.nan
            metadata["ColourGains"] = (math.inf, math.nan)
        if "AfMode" in self._ctrl_info:
            self._advance_continuous_af(passed)
            metadata["AfState"] = int(self._af_state)
            metadata["AfPauseState"] = 0
            metadata["LensPosition"] = self._lens_position
        return metadata

    def _advance_continuous_af(self, frames):
        states = libcamera.controls.AfStateEnum
        if self._af_scan_frames == 0 or "af-hang" in self._faults:
            return
        self._af_scan_frames = max(0, self._af_scan_frames - frames)
        if self._af_scan_frames == 0:
            self._af_state = states.Failed if "af-fail" in self._faults else states.Focused

    def _save(self, name, file_output, format, exif_data, metadata):
        stream = self._config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if name == "raw":
            raise NotImplementedError("the fake camera does not write DNG files")
        jpeg = isinstance(format, str) and format.lower() in ("jpg", "jpeg")
        faster_jpeg = FASTER_JPEG and "before-0.3.27" not in self._faults
        if stream["format"] == "YUYV" and jpeg and faster_jpeg:
            # v0.3.30 request.py save(): FORMAT_TABLE[format] for the simplejpeg path
            raise KeyError("YUYV")
        if stream["format"] in ("YUV420", "YUYV") and not faster_jpeg:
            # v0.3.25 request.py make_image()
            raise RuntimeError(f"Stream format {stream['format']} not supported for PIL images")
        if exif_data is not None:
            raise NotImplementedError("the fake camera does not merge exif_data")
        if isinstance(format, str):
            format_str = format.lower()
        elif isinstance(file_output, str):
            format_str = file_output.split(".")[-1].lower()
        elif isinstance(file_output, Path):
            format_str = file_output.suffix.lower()
        else:
            raise RuntimeError("Cannot determine format to save")
        quality = self.options.get("quality", 90)
        if format_str not in ("jpg", "jpeg"):
            compress_level = self.options.get("compress_level", 1)
            image = self._image(stream["size"])
            image.save(file_output, format=format, quality=quality, compress_level=compress_level)
            return
        jpeg_path = os.environ.get("FAKE_CAMERA_JPEG")
        # v0.3.26 request.py save(): simplejpeg for every stream but MJPEG, which Pillow
        # re-encodes as before (helpers.save(), no try: its errors reach the caller).
        simplejpeg = faster_jpeg and stream["format"] != "MJPEG"
        if jpeg_path:
            output_bytes = Path(jpeg_path).read_bytes()
        elif simplejpeg:
            encoded = io.BytesIO()  # what simplejpeg returns: a JPEG without EXIF
            self._image(stream["size"]).save(encoded, "JPEG", quality=quality)
            output_bytes = _spliced(encoded.getvalue(), self._exif(metadata))
        else:
            image = self._image(stream["size"])
            image.save(file_output, "JPEG", quality=quality, exif=self._exif(metadata))
            return
        # output_bytes stays alive while it is written, as picamera2's own does.
        out = file_output if isinstance(file_output, io.BytesIO) else open(file_output, "wb")
        try:
            for part in _as_written(output_bytes, simplejpeg):
                out.write(part)
        except Exception:
            pass  # v0.3.26 request.py save() swallows write errors
        finally:
            if out is not file_output:
                out.close()

    def _image(self, size):
        """The same picture every time: flat, with a red block in the top-left corner and a
        block of noise in the middle (so that JPEG quality matters), then flipped as configured.
        """
        width, height = size
        image = Image.new("RGB", size, (96, 112, 128))
        block_w, block_h = width // 4, height // 4
        image.paste((220, 30, 30), (0, 0, block_w, block_h))
        pixels = random.Random(0).randbytes(block_w * block_h)
        noise = Image.frombytes("L", (block_w, block_h), pixels).convert("RGB")
        image.paste(noise, ((width - block_w) // 2, (height - block_h) // 2))
        transform = self._config["transform"]
        if transform.hflip:
            image = image.transpose(_TRANSPOSE.FLIP_LEFT_RIGHT)
        if transform.vflip:
            image = image.transpose(_TRANSPOSE.FLIP_TOP_BOTTOM)
        return image

    def _exif(self, metadata):
        if "AnalogueGain" not in metadata or "DigitalGain" not in metadata:
            return b""
        exif = Image.Exif()
        now = datetime.now().strftime("%Y:%m:%d %H:%M:%S")
        exif[0x010F] = "Raspberry Pi"  # Make
        exif[0x0110] = self._id  # Model: picamera2 writes the camera Id here
        exif[0x0131] = "Picamera2"  # Software
        exif[0x0132] = now  # DateTime
        exif_ifd = exif.get_ifd(0x8769)
        exif_ifd[0x9003] = now  # DateTimeOriginal
        exif_ifd[0x829A] = TiffImagePlugin.IFDRational(metadata["ExposureTime"], 1000000)
        exif_ifd[0x8827] = int(metadata["AnalogueGain"] * metadata["DigitalGain"] * 100)  # ISO
        return exif.tobytes()
