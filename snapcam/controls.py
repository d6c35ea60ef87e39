"""Camera controls: CAMERA_CONTROLS's syntax, checked before the camera; its names, types and
ranges, checked against the opened camera's own; and which controls decide what snap does.

CAMERA_CONTROLS lists libcamera controls as NAME=VALUE, separated by commas; a control that
takes two numbers takes them comma-separated too (FrameDurationLimits=100,2000000). A value is
a number, true or false, or an enum value's name as the libcamera bindings spell it (AwbMode=
Daylight is libcamera.controls.AwbModeEnum.Daylight). picamera2's camera_controls maps each
control the camera has to its (min, max, default); the ranges of exposure, gain and frame
duration are the sensor mode's once configure() has chosen it (libcamera's
src/ipa/rpi/common/ipa_base.cpp configure(), read again by picamera2's configure_), so ranges
are checked after configure() and before start(). Imports nothing of snap's but its errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigError

# A setting's parsed value: each control's name and the values written after it.
Parsed = tuple[tuple[str, tuple[Any, ...]], ...]

SETTING = "CAMERA_CONTROLS"
NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Controls that take several numbers (their size in libcamera's control_ids_core.yaml).
ARRAY_SIZES = {"ColourGains": 2, "FrameDurationLimits": 2, "ColourCorrectionMatrix": 9}


def parse_value(name: str, text: str) -> Any:
    if text == "":
        raise ValueError(f"{name} has no value")
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if INTEGER.fullmatch(text):
        return int(text)
    if NUMBER.fullmatch(text):
        return float(text)
    if WORD.fullmatch(text):
        return text
    raise ValueError(f"{name}={text!r}: expected a number, true, false or a name such as Daylight")


def parse_controls(raw: str) -> Parsed:
    """NAME=VALUE[,VALUE...] items, comma-separated; a ValueError names the bad part."""
    controls: list[tuple[str, list[Any]]] = []
    for item in (part.strip() for part in raw.split(",")):
        if "=" in item:
            name, _, value = (part.strip() for part in item.partition("="))
            if not NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a control name (expected e.g. AwbMode)")
            if name in (known for known, _values in controls):
                raise ValueError(f"{name} is set twice")
            controls.append((name, [parse_value(name, value)]))
        elif not item:
            raise ValueError("an empty item between commas")
        elif not controls:
            raise ValueError(f"{item!r} is not NAME=VALUE (e.g. AwbMode=Daylight)")
        else:
            name, values = controls[-1]
            values.append(parse_value(name, item))
    return tuple((name, tuple(values)) for name, values in controls)


def shown(values: tuple[Any, ...] | Any) -> str:
    """Values as CAMERA_CONTROLS takes them: enum values by name, booleans as true/false."""
    if isinstance(values, (tuple, list)):
        return ",".join(shown(value) for value in values)
    if isinstance(values, bool):
        return str(values).lower()
    name = getattr(values, "name", None)
    return name if isinstance(name, str) else str(values)


def fixed_focus(parsed: Parsed) -> str:
    """The control that sets the focus itself ("" if none): LensPosition, or AfMode other than
    Auto (Manual keeps the lens where it is, Continuous focuses on its own)."""
    values = dict(parsed)
    if "LensPosition" in values:
        return f"LensPosition={shown(values['LensPosition'])}"
    if "AfMode" in values and values["AfMode"] not in (("Auto",), (1,)):
        return f"AfMode={shown(values['AfMode'])}"
    return ""


def fixed_exposure(parsed: Parsed) -> bool:
    """Nothing left for auto exposure to settle: AeEnable=false, or both ExposureTime and
    AnalogueGain given."""
    values = dict(parsed)
    return values.get("AeEnable") == (False,) or {"ExposureTime", "AnalogueGain"} <= set(values)


def check_autofocus(parsed: Parsed, camera_autofocus: bool, setting: str = SETTING) -> None:
    focus = fixed_focus(parsed)
    if camera_autofocus and focus:
        raise ConfigError(
            f"CAMERA_AUTOFOCUS=true cannot go with {focus} in {setting}, which sets the focus "
            "itself: set one or the other"
        )


def enum_of(enums, name: str):
    """libcamera.controls' enum for a control (also in its draft and rpi namespaces), or None."""
    for space in (enums, getattr(enums, "draft", None), getattr(enums, "rpi", None)):
        found = getattr(space, f"{name}Enum", None) if space is not None else None
        if found is not None:
            return found
    return None


def enum_value(name: str, values: tuple[Any, ...], enum, setting: str) -> Any:
    members = list(enum)
    names = ", ".join(member.name for member in members)
    if len(values) == 1:
        for member in members:
            if values[0] in (member.name, int(member)) and not isinstance(values[0], bool):
                return member
    raise ConfigError(f"{setting}: {name}={shown(values)} is not one of {names}")


def numbers(name: str, values: tuple[Any, ...], limits: tuple, setting: str) -> Any:
    low, high = limits[0], limits[1]
    whole = isinstance(low, int) and isinstance(high, int)
    size = ARRAY_SIZES.get(name, 1)
    what = "a whole number" if whole else "a number"
    wanted = what if size == 1 else f"{size} numbers, comma-separated"
    if len(values) != size or not all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in values
    ):
        raise ConfigError(f"{setting}: {name}={shown(values)}: expected {wanted}")
    if whole and not all(isinstance(value, int) for value in values):
        raise ConfigError(f"{setting}: {name}={shown(values)}: expected whole numbers")
    converted = tuple(value if whole else float(value) for value in values)
    if not all(math.isfinite(value) for value in converted):
        raise ConfigError(f"{setting}: {name}={shown(values)}: expected finite numbers")
    return converted[0] if size == 1 else converted


def resolve(parsed: Parsed, camera_controls: dict, enums, setting: str = SETTING) -> dict[str, Any]:
    """The controls as picamera2 takes them, checked against the camera's names and types
    (not yet its ranges: see check_ranges). enums: libcamera.controls; setting: the variable
    they come from, which errors name."""
    unknown = [name for name, _values in parsed if name not in camera_controls]
    if unknown:
        raise ConfigError(
            f"{setting}: this camera has no {unknown[0]} control; "
            f"it has {', '.join(sorted(camera_controls))}"
        )
    resolved = {}
    for name, values in parsed:
        limits = camera_controls[name]
        enum = enum_of(enums, name)
        if enum is not None:
            resolved[name] = enum_value(name, values, enum, setting)
        elif isinstance(limits[0], bool) or isinstance(limits[1], bool):
            if len(values) != 1 or not isinstance(values[0], bool):
                raise ConfigError(f"{setting}: {name}={shown(values)}: expected true or false")
            resolved[name] = values[0]
        elif isinstance(limits[0], (tuple, list)) or isinstance(limits[1], (tuple, list)):
            raise ConfigError(f"{setting}: {name} takes a rectangle, which {setting} cannot set")
        else:
            resolved[name] = numbers(name, values, limits, setting)
    return resolved


def check_ranges(resolved: dict[str, Any], camera_controls: dict, setting: str = SETTING) -> None:
    """Each number within its control's (min, max) as the configured camera gives them."""
    for name, value in resolved.items():
        low, high = camera_controls.get(name, (None, None, None))[:2]
        if isinstance(value, bool) or getattr(value, "name", None) is not None:
            continue
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
            continue
        values = value if isinstance(value, tuple) else (value,)
        if not all(low <= item <= high for item in values):
            raise ConfigError(
                f"{setting}: {name}={shown(value)} is outside this camera's range, "
                f"{number_text(low)} to {number_text(high)}"
            )


def number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def controls_text(resolved: dict[str, Any]) -> str:
    """The controls in force, in CAMERA_CONTROLS's own syntax, as stored with the shot."""
    return ",".join(f"{name}={shown(value)}" for name, value in resolved.items())


def longest_frame_us(parsed: Parsed) -> int:
    """The longest frame these controls let the camera take, in microseconds (0: they set
    nothing that lengthens a frame). libcamera lengthens a frame to hold its exposure, within
    FrameDurationLimits (src/ipa/rpi/common/ipa_base.cpp applyFrameDurations), and auto
    exposure may use all of FrameDurationLimits' maximum. Values that are no numbers are
    left to the check against the camera."""
    values = dict(parsed)
    exposure = [value for value in values.get("ExposureTime", ()) if is_number(value)]
    limits = [value for value in values.get("FrameDurationLimits", ()) if is_number(value)]
    if len(limits) == 2:
        if exposure:
            return int(max(limits[0], min(exposure[0], limits[1])))
        return int(limits[1])
    return int(exposure[0]) if exposure else 0


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def merged(parsed: Parsed, added: Parsed) -> Parsed:
    """parsed with added's controls set over it: what a camera running with parsed has once
    added is set on it."""
    values = dict(parsed)
    values.update(dict(added))
    return tuple(values.items())
