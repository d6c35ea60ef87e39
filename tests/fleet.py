#!/usr/bin/env python3
"""Fleet load test: many snap.py runs at once, as many Pis firing together, each with its own
fake camera handing over the same large JPEG; first against one Redis, then against a Redis
Cluster of three masters, both started here on loopback.

    .venv/bin/python tests/fleet.py --processes 50

Every shot must be stored whole (its bytes equal to the JPEG) under a key of its own, none
lost or overwritten. Prints the wall time and the servers' peak memory; exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import FAKE_CAMERA, make_app, start_cluster, start_redis


@dataclass
class Shot:
    camera: str
    returncode: int
    key: str | None
    seconds: float | None
    stderr: str


@dataclass
class FleetRun:
    shots: list[Shot]
    seconds: float


def make_jpeg(path: Path, megabytes: float) -> Path:
    """A JPEG of noise, which JPEG cannot squeeze, of about `megabytes`."""
    from PIL import Image

    wanted = megabytes * 1e6
    pixels = wanted
    for _ in range(4):
        width = int((pixels * 4 / 3) ** 0.5)
        height = int(pixels) // width
        noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        noise.save(path, quality=90)
        size = path.stat().st_size
        if abs(size - wanted) < wanted * 0.05:
            break
        pixels *= wanted / size
    return path


def run_fleet(processes: int, redis_url: str, cluster: bool, jpeg: Path, workdir: Path) -> FleetRun:
    """Start `processes` runs of snap.py at once, one camera each, and wait for them all."""
    shared = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(FAKE_CAMERA),
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": str(cluster).lower(),
        "FAKE_CAMERA_JPEG": str(jpeg),
        "IMAGE_WIDTH": "320",
        "IMAGE_HEIGHT": "240",
        "SETTLE_TIMEOUT": "0",
        "IMAGE_EXPIRY": "600",
    }
    snap = make_app(workdir / "app")  # a checkout of its own: no .env is read
    started = time.monotonic()
    running = {}
    for number in range(processes):
        camera = f"pi-{number:03d}"
        pi_dir = workdir / camera
        pi_dir.mkdir(parents=True)
        env = {
            **shared,
            "CAMERA_NAME": camera,
            "FAKE_CAMERA_DIR": str(pi_dir),
            "LOCK_DIR": str(pi_dir),
            "SPOOL_DIR": str(pi_dir / "spool"),
        }
        running[camera] = subprocess.Popen(
            [sys.executable, str(snap), "--json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    shots = []
    for camera, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        result = json.loads(stdout) if process.returncode == 0 else {}
        shots.append(
            Shot(camera, process.returncode, result.get("key"), result.get("seconds"), stderr)
        )
    return FleetRun(shots, time.monotonic() - started)


def check(client, run: FleetRun, jpeg: bytes) -> tuple[int, list[str]]:
    """How many shots are stored whole, and what went wrong: runs that failed, shots lost,
    cut or overwritten."""
    whole = 0
    found = [
        f"{shot.camera}: exit {shot.returncode}: {shot.stderr.strip()}"
        for shot in run.shots
        if shot.returncode != 0
    ]
    keys = [shot.key for shot in run.shots if shot.key]
    if len(set(keys)) != len(keys):
        found.append(f"runs reported the same key: {sorted(keys)}")
    for shot in run.shots:
        if not shot.key:
            continue
        image_data, camera = client.hmget(shot.key, ["image_data", "camera"])
        if image_data is None:
            found.append(f"{shot.camera}: {shot.key} is lost")
        elif image_data != jpeg:
            found.append(f"{shot.camera}: {shot.key} holds {len(image_data)} of {len(jpeg)} bytes")
        if camera is not None and camera.decode() != shot.camera:
            found.append(f"{shot.camera}: {shot.key} was overwritten by {camera.decode()}")
        elif image_data == jpeg:
            whole += 1
    listed = list(client.scan_iter(match="image:*", _type="hash", count=1000))
    if len(listed) != len(run.shots):
        found.append(f"SCAN lists {len(listed)} shots for {len(run.shots)} runs")
    return whole, found


def summary(name: str, run: FleetRun, whole: int, peaks: list[str]) -> str:
    shared_second = sum(1 for shot in run.shots if shot.key and "-" in shot.key.rpartition(":")[2])
    slowest = max((shot.seconds or 0.0 for shot in run.shots), default=0.0)
    return (
        f"{name}: {whole}/{len(run.shots)} shots stored whole, {shared_second} under a "
        f"-N key (a second already taken); wall {run.seconds:.1f} s, slowest shot "
        f"{slowest:.1f} s (capture to stored); peak memory {' / '.join(peaks)}"
    )


def peak_memory(server) -> str:
    return server.client().info("memory")["used_memory_peak_human"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=50, help="runs at once [50]")
    parser.add_argument("--jpeg-mb", type=float, default=3.0, help="JPEG size in MB [3]")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="snap-fleet-") as tmp:
        workdir = Path(tmp)
        jpeg_path = make_jpeg(workdir / "shot.jpg", args.jpeg_mb)
        jpeg = jpeg_path.read_bytes()
        print(
            f"fleet: {args.processes} snap.py runs at once, {len(jpeg) / 1e6:.1f} MB JPEG each, "
            f"{os.cpu_count()} cores"
        )

        server = start_redis(workdir / "redis")
        try:
            run = run_fleet(args.processes, server.url, False, jpeg_path, workdir / "pis-redis")
            whole, found = check(server.client(), run, jpeg)
            print(summary("redis", run, whole, [peak_memory(server)]))
        finally:
            server.stop()
        failed |= bool(found)

        cluster = start_cluster(workdir / "cluster")
        try:
            run = run_fleet(args.processes, cluster.url, True, jpeg_path, workdir / "pis-cluster")
            whole, found_cluster = check(cluster.client(), run, jpeg)
            peaks = [peak_memory(node) for node in cluster.nodes]
            print(summary("cluster (3 masters)", run, whole, peaks))
        finally:
            cluster.stop()
        failed |= bool(found_cluster)

    for problem in found + found_cluster:
        print(f"  {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
