"""Just enough of libcamera's names for `import picamera2` to succeed; nothing runs.

Transform and ColorSpace print like the real bindings, so signature defaults can be compared.
"""

import enum
import types

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


class Transform:
    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __str__(self):
        bits = self.hflip | self.vflip << 1 | self.transpose << 2
        return f"<libcamera.Transform '{_TRANSFORM_NAMES[bits]}'>"


class ColorSpace:
    Primaries = enum.IntEnum("Primaries", "Raw Smpte170m Rec709 Rec2020", start=0)
    TransferFunction = enum.IntEnum("TransferFunction", "Linear Srgb Rec709", start=0)
    YcbcrEncoding = enum.IntEnum("YcbcrEncoding", "Null Rec601 Rec709 Rec2020", start=0)
    Range = enum.IntEnum("Range", "Full Limited", start=0)

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"<libcamera.ColorSpace '{self.name}'>"

    Raw = staticmethod(lambda: ColorSpace("RAW"))
    Srgb = staticmethod(lambda: ColorSpace("sRGB"))
    Sycc = staticmethod(lambda: ColorSpace("sYCC"))
    Smpte170m = staticmethod(lambda: ColorSpace("SMPTE170M"))
    Rec709 = staticmethod(lambda: ColorSpace("Rec709"))
    Rec2020 = staticmethod(lambda: ColorSpace("Rec2020"))


class _Anything:
    """Any attribute, at any depth; each is created once so it stays the same object."""

    def __getattr__(self, name):
        value = _Anything()
        setattr(self, name, value)
        return value


_libcamera = types.SimpleNamespace(Transform=Transform, ColorSpace=ColorSpace)
Orientation = _Anything()
StreamRole = _Anything()
ControlType = _Anything()
properties = _Anything()
# Values from libcamera's control_ids yaml; picamera2 puts some of them in configurations.
controls = _Anything()
controls.AfModeEnum = enum.IntEnum("AfModeEnum", "Manual Auto Continuous", start=0)
controls.AfStateEnum = enum.IntEnum("AfStateEnum", "Idle Scanning Focused Failed", start=0)
controls.AfTriggerEnum = enum.IntEnum("AfTriggerEnum", "Start Cancel", start=0)
controls.draft.NoiseReductionModeEnum = enum.IntEnum(
    "NoiseReductionModeEnum", "Off Fast HighQuality Minimal ZSL", start=0
)
Size = Rectangle = PixelFormat = SensorConfiguration = CameraConfiguration = _Anything
Camera = CameraManager = FrameBuffer = FrameBufferAllocator = FrameMetadata = Request = _Anything
