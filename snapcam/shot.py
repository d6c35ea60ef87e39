"""The shot and the data contract: the fields a front end reads from each hash, and the rules
every field must follow to go into Redis. A leaf: it imports nothing of snap's."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

MIME_TYPE = "image/jpeg"
# lux when the camera gives no reading (USB cameras): the front ends need a number.
NO_LUX = -1
# A random id per shot, stored with it: whoever finds it under a key knows the shot is there.
SHOT_ID = "shot_id"
# Fields of the data contract; CAMERA_METADATA may not shadow them.
CONTRACT_FIELDS = ("image_data", "timestamp", "mime_type", "lux", "camera")
# The CAMERA_CONTROLS in force, stored with a shot taken with some.
CONTROLS_FIELD = "controls"
# The profile a shot was taken with, day or night, stored when NIGHT_LUX is set.
PROFILE_FIELD = "profile"


@dataclass(frozen=True)
class Shot:
    jpeg: memoryview
    metadata: dict
    timestamp: int
    controls: str = ""  # the controls in force, as CAMERA_CONTROLS spells them
    profile: str = ""  # day or night; "" without a night profile


def new_shot_id() -> str:
    return os.urandom(8).hex()


def to_snake_case(name: str) -> str:
    """A metadata name as its field's name: ExposureTime is exposure_time."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def flat_value(value: Any) -> Any:
    """A metadata value as a Redis hash field: numbers stay numbers, tuples join."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (tuple, list)):
        return ",".join(str(flat_value(item)) for item in value)
    return value


def lux_reading(metadata: dict) -> int:
    lux = metadata.get("Lux")
    if isinstance(lux, (int, float)) and not isinstance(lux, bool) and math.isfinite(lux):
        return max(int(lux), 0)
    return NO_LUX


def shot_fields(shot: Shot, camera_name: str, metadata_names: tuple[str, ...]) -> dict[str, Any]:
    """The hash of a shot: the contract's fields, then the metadata asked for that the camera
    reported."""
    fields: dict[str, Any] = {
        "image_data": shot.jpeg,
        "timestamp": shot.timestamp,
        "mime_type": MIME_TYPE,
        "camera": camera_name,
        SHOT_ID: new_shot_id(),
        "lux": lux_reading(shot.metadata),
    }
    for name in metadata_names:
        if name in shot.metadata:
            fields[to_snake_case(name)] = flat_value(shot.metadata[name])
    if shot.controls:
        fields[CONTROLS_FIELD] = shot.controls
    if shot.profile:
        fields[PROFILE_FIELD] = shot.profile
    return fields


def field_problem(fields: dict[str, Any]) -> str:
    """Why these fields cannot go into a Redis hash, or ""."""
    for name in ("timestamp", "mime_type"):
        if name not in fields:
            return f"its fields lack {name}"
    if type(fields["timestamp"]) is not int:
        return "its timestamp is not a whole number"
    for name, value in fields.items():
        if not utf8(name):
            return f"its field name {ascii(name)} is not valid UTF-8"
        if type(value) not in (str, int, float):
            return f"its field {name} holds {type(value).__name__}, not a string or a number"
        if isinstance(value, str) and not utf8(value):
            return f"its field {name} is not valid UTF-8"
    return ""


def utf8(text: str) -> bool:
    """Whether text can be written as UTF-8 (JSON may hold lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
