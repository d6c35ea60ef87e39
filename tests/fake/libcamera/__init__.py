"""Test stand-in for the libcamera Python bindings: only what picamera2 callers touch."""

import enum
import os
import types

# libcamera reads its log levels once, when the library is loaded.
if os.environ.get("FAKE_CAMERA_DIR") and "LIBCAMERA_LOG_LEVELS" in os.environ:
    with open(os.path.join(os.environ["FAKE_CAMERA_DIR"], "events.log"), "a") as _log:
        _log.write(f"libcamera log levels {os.environ['LIBCAMERA_LOG_LEVELS']}\n")

_TRANSFORM_NAMES = (
    "identity",
    "hflip",
    "vflip",
    "hvflip",
    "transpose",
    "rot270",
    "rot90",
    "rot180transpose",
)
_HFLIP, _VFLIP, _TRANSPOSE = 1, 2, 4
_ROTATION_BITS = {0: 0, 90: _VFLIP | _TRANSPOSE, 180: _HFLIP | _VFLIP, 270: _HFLIP | _TRANSPOSE}


class Transform:
    """Same keywords and defaults as the binding; Transform(other) copies."""

    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        if isinstance(rotation, Transform):
            self._bits = rotation._bits
            return
        bits = _ROTATION_BITS.get(rotation % 360) if isinstance(rotation, int) else None
        if bits is None:
            raise ValueError("Invalid rotation")
        self._bits = bits ^ (_HFLIP if hflip else 0) ^ (_VFLIP if vflip else 0)
        self._bits ^= _TRANSPOSE if transpose else 0

    def _flag(bit):
        def get(self):
            return bool(self._bits & bit)

        def set(self, on):
            self._bits = self._bits | bit if on else self._bits & ~bit

        return property(get, set)

    hflip = _flag(_HFLIP)
    vflip = _flag(_VFLIP)
    transpose = _flag(_TRANSPOSE)
    del _flag

    def __eq__(self, other):
        return isinstance(other, Transform) and self._bits == other._bits

    def __hash__(self):
        return hash(self._bits)

    def __repr__(self):
        return f"<libcamera.Transform '{_TRANSFORM_NAMES[self._bits]}'>"


class ColorSpace:
    class Primaries(enum.IntEnum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.IntEnum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.IntEnum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.IntEnum):
        Full = 0
        Limited = 1

    def __init__(self, primaries, transferFunction=None, ycbcrEncoding=None, range=None):
        if isinstance(primaries, ColorSpace):
            primaries, transferFunction, ycbcrEncoding, range = primaries._fields()
        self.primaries = primaries
        self.transferFunction = transferFunction
        self.ycbcrEncoding = ycbcrEncoding
        self.range = range

    def _fields(self):
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    @staticmethod
    def Raw():
        return ColorSpace(*_COLOUR_SPACES["RAW"])

    @staticmethod
    def Srgb():
        return ColorSpace(*_COLOUR_SPACES["sRGB"])

    @staticmethod
    def Sycc():
        return ColorSpace(*_COLOUR_SPACES["sYCC"])

    @staticmethod
    def Smpte170m():
        return ColorSpace(*_COLOUR_SPACES["SMPTE170M"])

    @staticmethod
    def Rec709():
        return ColorSpace(*_COLOUR_SPACES["Rec709"])

    @staticmethod
    def Rec2020():
        return ColorSpace(*_COLOUR_SPACES["Rec2020"])

    def __eq__(self, other):
        return isinstance(other, ColorSpace) and self._fields() == other._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        for name, fields in _COLOUR_SPACES.items():
            if fields == self._fields():
                return f"<libcamera.ColorSpace '{name}'>"
        return "<libcamera.ColorSpace '{}'>".format("/".join(f.name for f in self._fields()))


_P, _T, _Y, _R = (
    ColorSpace.Primaries,
    ColorSpace.TransferFunction,
    ColorSpace.YcbcrEncoding,
    ColorSpace.Range,
)
_COLOUR_SPACES = {
    "RAW": (_P.Raw, _T.Linear, _Y.Null, _R.Full),
    "sRGB": (_P.Rec709, _T.Srgb, _Y.Null, _R.Full),
    "sYCC": (_P.Rec709, _T.Srgb, _Y.Rec601, _R.Full),
    "SMPTE170M": (_P.Smpte170m, _T.Rec709, _Y.Rec601, _R.Limited),
    "Rec709": (_P.Rec709, _T.Rec709, _Y.Rec709, _R.Limited),
    "Rec2020": (_P.Rec2020, _T.Rec709, _Y.Rec2020, _R.Limited),
}

# The enum controls, as the bindings name them: <Control>Enum, each value's name without the
# prefix all of them share (src/py/libcamera/gen-py-controls.py), values from
# src/libcamera/control_ids_core.yaml, control_ids_draft.yaml and control_ids_rpi.yaml
# (libcamera v0.7.1+rpt20260429). Members are ints: they compare equal to metadata's ints.
_ENUMS = {
    "AeState": ("Idle", "Searching", "Converged"),
    "AeMeteringMode": ("CentreWeighted", "Spot", "Matrix", "Custom"),
    "AeConstraintMode": ("Normal", "Highlight", "Shadows", "Custom"),
    "AeExposureMode": ("Normal", "Short", "Long", "Custom"),
    "ExposureTimeMode": ("Auto", "Manual"),
    "AnalogueGainMode": ("Auto", "Manual"),
    "AeFlickerMode": ("Off", "Manual", "Auto"),
    "AwbMode": (
        "Auto", "Incandescent", "Tungsten", "Fluorescent", "Indoor", "Daylight", "Cloudy", "Custom",
    ),
    "AfMode": ("Manual", "Auto", "Continuous"),
    "AfRange": ("Normal", "Macro", "Full"),
    "AfSpeed": ("Normal", "Fast"),
    "AfMetering": ("Auto", "Windows"),
    "AfTrigger": ("Start", "Cancel"),
    "AfPause": ("Immediate", "Deferred", "Resume"),
    "AfState": ("Idle", "Scanning", "Focused", "Failed"),
    "AfPauseState": ("Running", "Pausing", "Paused"),
    "HdrMode": ("Off", "MultiExposureUnmerged", "MultiExposure", "SingleExposure", "Night"),
}  # fmt: skip

controls = types.ModuleType("libcamera.controls")
for _name, _values in _ENUMS.items():
    setattr(controls, f"{_name}Enum", enum.IntEnum(f"{_name}Enum", list(_values), start=0))
controls.draft = types.ModuleType("libcamera.controls.draft")
controls.draft.NoiseReductionModeEnum = enum.IntEnum(
    "NoiseReductionModeEnum", {"Off": 0, "Fast": 1, "HighQuality": 2, "Minimal": 3, "ZSL": 4}
)
controls.rpi = types.ModuleType("libcamera.controls.rpi")
controls.rpi.SyncModeEnum = enum.IntEnum("SyncModeEnum", {"Off": 0, "Server": 1, "Client": 2})
