"""snapcam.shot in-process: the fields a shot is stored with."""

from __future__ import annotations

import re

from snapcam.shot import Shot, shot_fields


def test_shot_fields_hold_the_contract_and_the_metadata_asked_for(make_config):
    config = make_config(CAMERA_NAME="garden", CAMERA_METADATA="ExposureTime,ColourGains")
    shot = Shot(
        jpeg=memoryview(b"\xff\xd8"),
        metadata={"Lux": 41.7, "ExposureTime": 1000, "ColourGains": (1.5, 2.0)},
        timestamp=1700000000,
    )

    fields = shot_fields(shot, config.camera_name, config.camera_metadata)

    assert re.fullmatch(r"[0-9a-f]{16}", fields.pop("shot_id"))
    assert fields == {
        "image_data": shot.jpeg,
        "timestamp": 1700000000,
        "mime_type": "image/jpeg",
        "camera": "garden",
        "lux": 41,
        "exposure_time": 1000,
        "colour_gains": "1.5,2.0",
    }
