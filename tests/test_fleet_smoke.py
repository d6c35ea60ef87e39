"""The fleet load test (tests/fleet.py) in small: a few runs at once, every shot whole."""

import subprocess
import sys

import fleet
from helpers import ROOT


def test_fleet_of_five_stores_every_shot_whole_on_redis_and_on_the_cluster():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fleet.py"), "--processes", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("redis: 5/5 shots stored whole")
    assert lines[2].startswith("cluster (3 masters): 5/5 shots stored whole")
    assert all("wall" in line and "peak memory" in line for line in lines[1:3])


def test_fleet_check_finds_lost_cut_and_overwritten_shots(redis_server, redis_db, tmp_path):
    jpeg = fleet.make_jpeg(tmp_path / "shot.jpg", 0.1)
    run = fleet.run_fleet(3, redis_server.url, False, jpeg, tmp_path / "pis")
    lost, cut, overwritten = (shot.key for shot in run.shots)
    redis_db.delete(lost)
    redis_db.hset(cut, "image_data", jpeg.read_bytes()[:1000])
    redis_db.hset(overwritten, "camera", "intruder")

    whole, found = fleet.check(redis_db, run, jpeg.read_bytes())

    assert whole == 0
    assert found == [
        f"pi-000: {lost} is lost",
        f"pi-001: {cut} holds 1000 of {jpeg.stat().st_size} bytes",
        f"pi-002: {overwritten} was overwritten by intruder",
        "SCAN lists 2 shots for 3 runs",
    ]
