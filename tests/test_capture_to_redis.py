"""One shot from the (fake) camera into the real Redis: the hash, what is printed, the
camera's settings honoured."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import time

import pytest
from helpers import camera_events
from PIL import Image, ImageChops, ImageStat


def only_key(redis_db, pattern="image:*"):
    keys = redis_db.keys(pattern)
    assert len(keys) == 1, keys
    return keys[0].decode()


def decoded(jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean)


def test_shot_prints_one_line_naming_the_key(run_snap, redis_db):
    result = run_snap(IMAGE_EXPIRY="120")

    assert result.returncode == 0, result.stderr
    key = only_key(redis_db)
    assert re.fullmatch(
        rf"stored {key} \(\d+ kB, lux \d+, expires in 120 s\) in \d+\.\d s\n", result.stdout
    )


def test_shot_stores_the_contract_fields(run_snap, redis_db):
    before = int(time.time())

    result = run_snap()

    assert result.returncode == 0, result.stderr
    key = only_key(redis_db)
    fields = redis_db.hgetall(key)
    assert set(fields) == {
        b"image_data",
        b"timestamp",
        b"mime_type",
        b"lux",
        b"camera",
        b"shot_id",
    }
    assert fields[b"mime_type"] == b"image/jpeg"
    assert key == f"image:{int(fields[b'timestamp'])}"
    assert before <= int(fields[b"timestamp"]) <= int(time.time())
    assert int(fields[b"lux"]) >= 0
    assert decoded(fields[b"image_data"]).size == (640, 480)


def test_shot_expires_after_image_expiry(run_snap, redis_db):
    result = run_snap(IMAGE_EXPIRY="300")

    assert result.returncode == 0, result.stderr
    assert 295 <= redis_db.ttl(only_key(redis_db)) <= 300


def test_stored_bytes_are_the_bytes_the_camera_encoded(run_snap, redis_db, tmp_path):
    output = tmp_path / "shot.jpg"

    result = run_snap("--output", str(output))

    assert result.returncode == 0, result.stderr
    stored = redis_db.hget(only_key(redis_db), "image_data")
    assert stored == output.read_bytes()
    assert stored[:2] == b"\xff\xd8" and stored[-2:] == b"\xff\xd9"


def test_hset_and_expire_travel_in_one_multi_exec(run_snap, redis_server, redis_db, tmp_path):
    monitor_log = tmp_path / "monitor.log"
    with monitor_log.open("w") as log:
        monitor = subprocess.Popen(
            ["redis-cli", "-p", str(redis_server.port), "monitor"], stdout=log
        )
        time.sleep(0.3)
        result = run_snap(IMAGE_EXPIRY="90")
        time.sleep(0.3)
        monitor.terminate()
        monitor.wait()

    assert result.returncode == 0, result.stderr
    commands = [
        re.search(r'\] "(\w+)"', line).group(1).upper()
        for line in monitor_log.read_text().splitlines()
        if '] "' in line
    ]
    start = commands.index("MULTI")
    assert commands[start : start + 4] == ["MULTI", "HSET", "EXPIRE", "EXEC"]


def test_json_prints_one_object_with_the_result(run_snap, redis_db):
    result = run_snap("--json", IMAGE_EXPIRY="60")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    key = only_key(redis_db)
    assert report["key"] == key
    assert report["timestamp"] == int(key.rpartition(":")[2])
    assert report["bytes"] == len(redis_db.hget(key, "image_data"))
    assert report["lux"] == int(redis_db.hget(key, "lux"))
    assert report["ttl"] == 60
    assert report["seconds"] > 0
    assert "ExposureTime" in report["metadata"]


def refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def test_json_is_strict_whatever_the_metadata_holds(run_snap, redis_db):
    result = run_snap("--json", FAKE_CAMERA_FAULTS="nan-metadata")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout, parse_constant=refuse_constant)
    assert report["metadata"]["Lux"] is None
    assert report["metadata"]["ColourGains"] == [None, None]
    assert report["lux"] == -1


def test_quiet_prints_nothing_on_success(run_snap, redis_db):
    result = run_snap("--quiet")

    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    assert redis_db.keys("image:*")


def test_dry_run_captures_without_touching_redis(run_snap, redis_db, tmp_path):
    output = tmp_path / "aim.jpg"

    result = run_snap("--dry-run", "--output", str(output), REDIS_URL="redis://127.0.0.1:1")

    assert result.returncode == 0, result.stderr
    assert "not stored (dry run)" in result.stdout
    assert decoded(output.read_bytes()).size == (640, 480)
    assert redis_db.keys("*") == []


def test_unwritable_output_still_stores_the_shot_and_exits_73(run_snap, redis_db, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()

    result = run_snap("--output", str(target))

    assert result.returncode == 73
    assert "--output" in result.stderr
    assert redis_db.keys("image:*")


def test_full_sensor_resolution_when_no_size_is_set(run_snap, redis_db):
    result = run_snap(IMAGE_WIDTH="", IMAGE_HEIGHT="")

    assert result.returncode == 0, result.stderr
    jpeg = redis_db.hget(only_key(redis_db), "image_data")
    assert decoded(jpeg).size == (4608, 2592)


def test_image_size_is_honoured(run_snap, redis_db):
    result = run_snap(IMAGE_WIDTH="800", IMAGE_HEIGHT="600")

    assert result.returncode == 0, result.stderr
    assert decoded(redis_db.hget(only_key(redis_db), "image_data")).size == (800, 600)


def test_jpeg_quality_is_honoured(run_snap, tmp_path):
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"

    run_snap("--dry-run", "--output", str(low), JPEG_QUALITY="10")
    run_snap("--dry-run", "--output", str(high), JPEG_QUALITY="95")

    assert 0 < low.stat().st_size < high.stat().st_size / 2


@pytest.mark.parametrize(
    ("variable", "flip"),
    [
        ("CAMERA_HFLIP", Image.Transpose.FLIP_LEFT_RIGHT),
        ("CAMERA_VFLIP", Image.Transpose.FLIP_TOP_BOTTOM),
    ],
)
def test_flip_is_honoured(run_snap, tmp_path, variable, flip):
    plain, flipped = tmp_path / "plain.jpg", tmp_path / "flipped.jpg"

    run_snap("--dry-run", "--output", str(plain))
    run_snap("--dry-run", "--output", str(flipped), **{variable: "true"})

    plain_image, flipped_image = decoded(plain.read_bytes()), decoded(flipped.read_bytes())
    assert difference(plain_image, flipped_image) > 20
    assert difference(plain_image.transpose(flip), flipped_image) < 5


def test_key_prefix_is_honoured(run_snap, redis_db):
    result = run_snap(IMAGE_KEY_PREFIX="image:garden")

    assert result.returncode == 0, result.stderr
    key = only_key(redis_db, "image:garden:*")
    assert key.rpartition(":")[2] == redis_db.hget(key, "timestamp").decode()


def test_camera_metadata_is_stored_as_flat_snake_case_fields(run_snap, redis_db):
    result = run_snap(CAMERA_METADATA="ExposureTime,AnalogueGain,ColourGains")

    assert result.returncode == 0, result.stderr
    fields = redis_db.hgetall(only_key(redis_db))
    assert int(fields[b"exposure_time"]) > 0
    assert float(fields[b"analogue_gain"]) >= 1.0
    red, blue = fields[b"colour_gains"].split(b",")
    assert float(red) > 0 and float(blue) > 0


def test_metadata_the_camera_lacks_is_left_out_with_a_warning(run_snap, redis_db):
    result = run_snap(CAMERA_METADATA="ExposureTime,SensorTemperature")

    assert result.returncode == 0, result.stderr
    fields = redis_db.hgetall(only_key(redis_db))
    assert b"exposure_time" in fields and b"sensor_temperature" not in fields
    assert "SensorTemperature" in result.stderr


def test_camera_without_lux_stores_lux_minus_one_and_says_so_once(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_MODEL="uvc")

    assert result.returncode == 0, result.stderr
    assert redis_db.hget(only_key(redis_db), "lux") == b"-1"
    assert result.stderr.count("no Lux reading") == 1
    assert "warning" not in result.stderr
    assert "no lux" in result.stdout


def test_no_lux_fault_stores_lux_minus_one(run_snap, redis_db):
    result = run_snap(FAKE_CAMERA_FAULTS="no-lux")

    assert result.returncode == 0, result.stderr
    assert redis_db.hget(only_key(redis_db), "lux") == b"-1"


def test_camera_is_opened_configured_started_and_closed(run_snap, redis_db, camera_dir):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    events = camera_events(camera_dir)
    assert events.index("open 0") < events.index("configure") < events.index("start")
    assert events.index("start") < events.index("capture_file")
    assert events[-1] == "close"


def test_camera_field_holds_the_hostname_by_default(run_snap, redis_db):
    result = run_snap()

    assert result.returncode == 0, result.stderr
    assert redis_db.hget(only_key(redis_db), "camera") == socket.gethostname().encode()


def test_camera_name_is_stored_in_the_camera_field(run_snap, redis_db):
    result = run_snap(CAMERA_NAME="garden")

    assert result.returncode == 0, result.stderr
    assert redis_db.hget(only_key(redis_db), "camera") == b"garden"


def test_camera_num_selects_the_camera(run_snap, redis_db, camera_dir):
    result = run_snap(CAMERA_NUM="1", FAKE_CAMERA_COUNT="2")

    assert result.returncode == 0, result.stderr
    assert "open 1" in camera_events(camera_dir)
