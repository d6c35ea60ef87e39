"""Print, as JSON, the API and some behaviour of whichever picamera2 is on sys.path.

Usage: python describe_api.py real|fake
"real" expects picamera2 from PyPI with the stubs beside this file (no camera, no libcamera):
the behaviour cases then run picamera2's own code on an instance built without __init__.
"fake" expects tests/fake, configured through its FAKE_CAMERA_* variables.
"""

import inspect
import io
import json
import os
import re
import sys
import threading
import types

import picamera2
from libcamera import Transform

SIDE = sys.argv[1]
DUNDERS = ("__init__", "__enter__", "__exit__")
# What the fake models: sensor size and raw format, and the controls the cases depend on.
MODELS = {
    "imx708": ((4608, 2592), "SRGGB10_CSI2P", ["NoiseReductionMode", "FrameDurationLimits"]),
    "imx219": ((3280, 2464), "SBGGR10_CSI2P", ["NoiseReductionMode", "FrameDurationLimits"]),
    "uvc": ((1280, 720), "MJPEG", []),
}


def describe_signature(func):
    return [
        [p.name, p.kind.name, None if p.default is p.empty else repr(p.default)]
        for p in inspect.signature(func).parameters.values()
    ]


def describe_class(cls, dunders=DUNDERS):
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name not in dunders:
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, staticmethod):
            members[name] = {
                "kind": "staticmethod",
                "signature": describe_signature(member.__func__),
            }
        elif isinstance(member, classmethod):
            members[name] = {
                "kind": "classmethod",
                "signature": describe_signature(member.__func__),
            }
        elif isinstance(member, property):
            members[name] = {"kind": "property"}
        elif inspect.isfunction(member):
            members[name] = {"kind": "method", "signature": describe_signature(member)}
        else:
            members[name] = {"kind": "attribute"}
    return members


def instance_attributes():
    if SIDE == "fake":
        return sorted(name for name in vars(picamera2.Picamera2()) if not name.startswith("_"))
    source = inspect.getsource(picamera2.Picamera2)
    return sorted(set(re.findall(r"\bself\.([a-z]\w*)\s*(?::[^=\n]+)?=(?!=)", source)))


def describe_module():
    names = {}
    public = getattr(picamera2, "__all__", None) or [n for n in dir(picamera2) if n[0] != "_"]
    for name in public:
        value = getattr(picamera2, name)
        if isinstance(value, types.ModuleType):
            names[name] = "module"
        elif isinstance(value, type):
            names[name] = f"class {value.__module__}.{value.__qualname__}"
        else:
            names[name] = type(value).__name__
    return names


def camera(model, faults=""):
    """An open camera of the given model; for the real side, without libcamera behind it."""
    if SIDE == "fake":
        os.environ["FAKE_CAMERA_MODEL"] = model
        os.environ["FAKE_CAMERA_FAULTS"] = faults
        return picamera2.Picamera2()
    size, sensor_format, controls = MODELS[model]
    if model == "imx708":
        controls = controls + ["AfMode", "AfTrigger"]
    cam = object.__new__(picamera2.Picamera2)
    cam._preview = None
    cam.is_open = False
    cam._reset_flags()
    cam.camera = object()
    cam.camera_properties_ = {} if model == "uvc" else {"ColorFilterArrangement": 0}
    limits = types.SimpleNamespace(min=0, max=1, default=0)
    cam.camera_ctrl_info = {name: (None, limits) for name in controls}
    cam.sensor_resolution = size
    cam.sensor_format = sensor_format
    return cam


def started_camera():
    cam = camera("imx708")
    if SIDE == "fake":
        cam.configure(cam.create_still_configuration())
        cam.start()
    else:
        cam.camera_config = cam.create_still_configuration()
        cam.started = True
    return cam


def absent_camera():
    if SIDE == "fake":
        os.environ["FAKE_CAMERA_FAULTS"] = "absent"
    else:
        picamera2.Picamera2.global_camera_info = staticmethod(lambda: [])
    return picamera2.Picamera2()


def jpeg_to_bytesio_without_format():
    if SIDE == "fake":
        return started_camera().capture_file(io.BytesIO(), wait=1)
    # The real check runs in the event loop, which needs frames; call it directly.
    return picamera2.request.Helpers(camera("imx708"))._get_format_str(io.BytesIO(), None)


def jobs_when_no_frame_arrives():
    """Not started: no frame ever arrives, in picamera2 and in the fake alike."""
    cam = camera("imx708")
    outcomes = {"wait=0.1": bounded_outcome(lambda: cam.capture_metadata(wait=0.1))}
    if not hasattr(cam, "cancel_all_and_flush"):  # before 0.3.20 a job cannot be dropped
        outcomes["signal_function"] = outcome(lambda: cam.capture_metadata(signal_function=print))
        return "; ".join(f"{call} {result}" for call, result in outcomes.items())
    job = cam.capture_metadata(wait=False)
    outcomes["wait=False"] = outcome(lambda: job)
    outcomes["wait=0"] = outcome(lambda: cam.capture_metadata(wait=0))
    outcomes["signal_function"] = outcome(lambda: cam.capture_metadata(signal_function=print))
    outcomes["wait(job, 0.05)"] = outcome(lambda: cam.wait(job, 0.05))
    cam.cancel_all_and_flush()
    outcomes["wait(job) after cancel_all_and_flush"] = outcome(lambda: cam.wait(job))
    return "; ".join(f"{call} {result}" for call, result in outcomes.items())


CASES = {
    "still configuration, defaults": lambda: camera("imx708").create_still_configuration(),
    "still configuration, USB camera": lambda: camera("uvc").create_still_configuration(),
    "still configuration, no autofocus": lambda: camera("imx219").create_still_configuration(),
    "still configuration, odd YUV420 size, flips, no raw": lambda: camera(
        "imx708"
    ).create_still_configuration(
        main={"format": "YUV420", "size": (1921, 1081)},
        raw=None,
        transform=Transform(hflip=True, vflip=True),
        controls={"AfMode": 2},
    ),
    "still configuration, bad stream key": lambda: camera("imx708").create_still_configuration(
        main={"colour": "red"}
    ),
    "still configuration, undefined display stream": lambda: camera(
        "imx708"
    ).create_still_configuration(display="lores"),
    "options of a new camera": lambda: camera("imx708").options,
    "set_controls AfMode without autofocus": lambda: camera("imx219").set_controls({"AfMode": 1}),
    "autofocus_cycle without autofocus": lambda: camera("imx219").autofocus_cycle(wait=1),
    "configure while started": lambda: started_camera().configure({}),
    "stop before start": lambda: camera("imx708").stop(),
    "no camera": absent_camera,
    "capture_file to BytesIO without format": jpeg_to_bytesio_without_format,
    "jobs when no frame arrives": jobs_when_no_frame_arrives,
}


# Before 0.3.20 the real side of these cases cannot be reached with the stubs (0.3.12 asks
# libcamera.CameraManager.singleton(); request.Helpers has no _get_format_str): not compared.
if tuple(int(p) for p in os.environ.get("FAKE_PICAMERA2_VERSION", "0.3.38").split(".")) < (
    0,
    3,
    20,
):
    del CASES["no camera"], CASES["capture_file to BytesIO without format"]


def normalise(value):
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if type(value).__name__ == "Job":
        return "<Job>"
    return repr(value)


def bounded_outcome(call, seconds=1.0):
    """outcome(call), or that it was still waiting after `seconds` (picamera2 before 0.3.20
    takes wait=<seconds> as "wait without limit")."""
    results = []
    waiter = threading.Thread(target=lambda: results.append(outcome(call)), daemon=True)
    waiter.start()
    waiter.join(seconds)
    return results[0] if results else f"still waiting after {seconds:g} s"


def outcome(call):
    try:
        result = call()
    except Exception as e:
        return f"raises {type(e).__module__}.{type(e).__qualname__}: {e}"
    return normalise(result)


report = {
    "module": describe_module(),
    "Picamera2": describe_class(picamera2.Picamera2),
    "instance_attributes": instance_attributes(),
    "Job": describe_class(picamera2.job.Job, dunders=()),  # only picamera2 makes jobs
    "cases": {name: outcome(case) for name, case in CASES.items()},
}
json.dump(report, sys.stdout, indent=1)
