#!/usr/bin/env python3
"""What a shot costs beyond the camera: snap.py against a bare floor, run on request.

    python3 tests/benchmark.py [--runs N] [--sizes MB [MB ...]] [--strict]

The fake camera (tests/fake) hands over a pre-encoded JPEG of random noise of each size, so
no encoding is timed. Every case is its own process, snap.py run as `python3 snap.py`; the
table gives the medians of wall time and peak RSS. The floor is the least a shot needs: the
same fake-camera capture into a BytesIO, then one MULTI/EXEC of HSET+EXPIRE of the same bytes
through redis-py, with environs reading the same environment. Targets are marked PASS or
over; only with --strict does a target over make the exit code 1.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import FAKE_CAMERA, make_app, start_redis  # noqa: E402

RATIO_TARGET = 1.10  # snap.py / floor, wall time and peak RSS
RATIO_TARGET_FROM_MB = 5  # smaller shots are shown without a target
HELP_TARGET = 1.2  # snap.py --help / python3 -c "import environs"
COPIES_TARGET = 1  # JPEG copies between the camera's buffer and the socket

FLOOR_SCRIPT = """\
import io
import time

import redis
from environs import Env
from picamera2 import Picamera2

env = Env()
camera = Picamera2(env.int("CAMERA_NUM", 0))
size = (env.int("IMAGE_WIDTH"), env.int("IMAGE_HEIGHT"))
camera.configure(camera.create_still_configuration(main={"size": size}, raw=None))
camera.start()
buffer = io.BytesIO()
metadata = camera.capture_file(buffer, format="jpeg")
camera.close()
timestamp = int(time.time())
key = f"{env.str('IMAGE_KEY_PREFIX')}:{timestamp}"
fields = {
    "image_data": buffer.getbuffer(),
    "timestamp": timestamp,
    "mime_type": "image/jpeg",
    "lux": int(metadata["Lux"]),
}
with redis.Redis.from_url(env.str("REDIS_URL")).pipeline(transaction=True) as pipe:
    pipe.hset(key, mapping=fields)
    pipe.expire(key, env.int("IMAGE_EXPIRY"))
    pipe.execute()
"""

# Runs one case and prints its wall time, peak RSS in KiB and exit code. A process of its own,
# small, because Linux counts in a child's ru_maxrss the RSS it had when forked: forked from
# the benchmark, every case would report at least the benchmark's own size.
LAUNCHER_SCRIPT = """\
import os
import sys
import time

started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""

# Runs snap.py's own main() and prints the most memory Python allocated at once from the
# camera filling its buffer (capture_file returning) to store() returning: each copy of the
# JPEG on its way to the socket adds one JPEG size.
COPIES_SCRIPT = """\
import sys
import tracemalloc

import picamera2

sys.path.insert(0, sys.argv[1])
from snapcam import cli, store as snap_store  # noqa: E402

capture_file, store = picamera2.Picamera2.capture_file, snap_store.store


def traced_capture_file(*args, **kwargs):
    metadata = capture_file(*args, **kwargs)
    tracemalloc.start()
    return metadata


def traced_store(*args, **kwargs):
    key = store(*args, **kwargs)
    print(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    return key


picamera2.Picamera2.capture_file, snap_store.store = traced_capture_file, traced_store
sys.exit(cli.main(["--quiet"]))
"""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_kib: int


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Jpeg:
    megabytes: float  # as asked for
    path: Path
    size: int  # as made

    @property
    def name(self) -> str:
        return f"{self.megabytes:g} MB"

    @property
    def label(self) -> str:
        return f"{self.size / 1e6:.1f} MB"


@dataclass(frozen=True)
class Scripts:
    snap: Path
    floor: Path
    launcher: Path
    copies: Path


@dataclass(frozen=True)
class Row:
    label: str
    snap: str
    floor: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool = True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tests/benchmark.py",
        description="Time snap.py and measure its memory against a bare floor.",
    )
    parser.add_argument(
        "--runs", type=int, default=25, help="runs of each case, 5 or more to quote [25]"
    )
    parser.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=[1, 5, 10],
        metavar="MB",
        help="JPEG sizes in MB [1 5 10]",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is not met")
    args = parser.parse_args(argv)
    if args.runs < 1 or min(args.sizes) <= 0:
        parser.error("--runs and --sizes must be greater than 0")
    return args


def encoded_noise(width: int, height: int) -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    output = io.BytesIO()
    image.save(output, "JPEG", quality=90)
    return output.getvalue()


def noise_jpeg(directory: Path, megabytes: float) -> Jpeg:
    """A 4:3 JPEG of random noise of about `megabytes` MB: noise does not compress, so the
    size follows the pixel count."""
    bytes_per_pixel = len(encoded_noise(256, 256)) / 256**2
    height = max(16, round((megabytes * 1e6 / bytes_per_pixel * 3 / 4) ** 0.5))
    data = encoded_noise(height * 4 // 3, height)
    path = directory / f"{megabytes:g}MB.jpg"
    path.write_bytes(data)
    return Jpeg(megabytes, path, len(data))


def write_scripts(workdir: Path) -> Scripts:
    scripts = Scripts(
        snap=make_app(workdir / "app"),  # a checkout of its own: no .env is read
        floor=workdir / "floor.py",
        launcher=workdir / "launcher.py",
        copies=workdir / "copies.py",
    )
    scripts.floor.write_text(FLOOR_SCRIPT)
    scripts.launcher.write_text(LAUNCHER_SCRIPT)
    scripts.copies.write_text(COPIES_SCRIPT)
    return scripts


def shot_env(workdir: Path, redis_url: str, jpeg: Jpeg) -> dict[str, str]:
    """What snap.py and the floor run in: nothing inherited but PATH and HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "PYTHONPATH": str(FAKE_CAMERA),
        "FAKE_CAMERA_DIR": str(workdir),
        "FAKE_CAMERA_JPEG": str(jpeg.path),
        # The fake camera draws a frame of this size, which FAKE_CAMERA_JPEG then replaces;
        # tiny, so that neither side pays for it.
        "IMAGE_WIDTH": "64",
        "IMAGE_HEIGHT": "64",
        "SETTLE_TIMEOUT": "0",
        "REDIS_URL": redis_url,
        "IMAGE_EXPIRY": "600",
        "IMAGE_KEY_PREFIX": "image",
        "SPOOL_DIR": str(workdir / "spool"),
        "LOCK_DIR": str(workdir),
    }


def all_cases(scripts: Scripts, jpegs: list[Jpeg], workdir: Path, redis_url: str) -> list[Case]:
    python = sys.executable
    cases = []
    for jpeg in jpegs:
        env = shot_env(workdir, redis_url, jpeg)
        cases.append(Case(f"snap.py {jpeg.name}", [python, str(scripts.snap), "--quiet"], env))
        cases.append(Case(f"floor {jpeg.name}", [python, str(scripts.floor)], env))
    env = shot_env(workdir, redis_url, jpegs[0])
    return [
        *cases,
        Case("snap.py --help", [python, str(scripts.snap), "--help"], env),
        Case("import environs", [python, "-c", "import environs"], env),
        Case("snap.py --check", [python, str(scripts.snap), "--check"], env),
    ]


def run_once(case: Case, launcher: Path) -> Sample:
    """Wall time and peak RSS of one run; any exit code but 0 stops the benchmark."""
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(launcher), *case.argv],
        env=case.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    report = completed.stdout.split()
    if completed.returncode != 0 or len(report) != 3 or report[2] != "0":
        raise SystemExit(f"{case.name} failed: {completed.stderr.strip()}")
    seconds, peak_rss_kib, _ = report
    return Sample(float(seconds), int(peak_rss_kib))  # ru_maxrss is in KiB on Linux


def median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.seconds for s in samples),
        round(statistics.median(s.peak_rss_kib for s in samples)),
    )


def paired_ratio(snap: list[float], floor: list[float]) -> float:
    """The median of the ratios of runs of the same round, which ran one after the other:
    a load that comes and goes on the machine weighs on both."""
    return statistics.median(s / f for s, f in zip(snap, floor))


def measure(
    cases: list[Case], runs: int, launcher: Path, after_each: Callable[[], object]
) -> dict[str, list[Sample]]:
    """`runs` runs of each case, in rounds that take every case in turn, in alternate order,
    so that each case runs next to its floor."""
    samples: dict[str, list[Sample]] = {case.name: [] for case in cases}
    for case in cases:  # warm-up: bytecode caches and the page cache
        run_once(case, launcher)
        after_each()
    for round_number in range(runs):
        for case in cases if round_number % 2 == 0 else reversed(cases):
            samples[case.name].append(run_once(case, launcher))
            after_each()
    return samples


def copies_peak(scripts: Scripts, env: dict[str, str]) -> int:
    """Bytes snap.py allocates at once between the camera's buffer and the socket."""
    completed = subprocess.run(
        [sys.executable, str(scripts.copies), str(scripts.snap.parent)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"counting copies failed: {completed.stderr.strip()}")
    return int(completed.stdout)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:.1f} MB"


def compared(
    label: str,
    show: Callable[[float], str],
    value: Callable[[Sample], float],
    snap: list[Sample],
    floor: list[Sample],
    limit: float | None,
) -> Row:
    """One measure of snap.py and of its floor: medians, and their paired ratio."""
    ratio = paired_ratio([value(s) for s in snap], [value(s) for s in floor])
    shown = show(value(median(snap))), show(value(median(floor)))
    if limit is None:
        return Row(label, *shown, ratio)
    return Row(label, *shown, ratio, f"<= {limit:.2f}", round(ratio, 2) <= limit)


def seconds(sample: Sample) -> float:
    return sample.seconds


def peak_rss(sample: Sample) -> int:
    return sample.peak_rss_kib


def shot_rows(jpeg: Jpeg, snap: list[Sample], floor: list[Sample]) -> list[Row]:
    limit = RATIO_TARGET if jpeg.megabytes >= RATIO_TARGET_FROM_MB else None
    return [
        compared(f"shot {jpeg.label}: wall", ms, seconds, snap, floor, limit),
        compared(f"shot {jpeg.label}: peak RSS", mb, peak_rss, snap, floor, limit),
    ]


def held_copies_row(jpegs: list[Jpeg], results: dict[str, list[Sample]]) -> Row:
    """Peak RSS added per JPEG byte from the smallest shot to the largest: the copies of the
    JPEG a process holds at its peak, the camera's own included."""
    small, large = jpegs[0], jpegs[-1]

    def held(side: str) -> float:
        added_kib = (
            median(results[f"{side} {large.name}"]).peak_rss_kib
            - median(results[f"{side} {small.name}"]).peak_rss_kib
        )
        return added_kib * 1024 / (large.size - small.size)

    snap, floor = held("snap.py"), held("floor")
    label = f"JPEGs held at peak RSS (its growth from {small.label} to {large.label})"
    return Row(label, f"{snap:.2f}", f"{floor:.2f}", snap / floor)


def command_rows(results: dict[str, list[Sample]]) -> list[Row]:
    return [
        compared(
            '--help: wall (floor: python3 -c "import environs")',
            ms,
            seconds,
            results["snap.py --help"],
            results["import environs"],
            HELP_TARGET,
        ),
        Row("--check: wall", ms(median(results["snap.py --check"]).seconds)),
    ]


def copies_row(jpeg: Jpeg, peak_bytes: int) -> Row:
    copies = peak_bytes // jpeg.size
    return Row(
        f"JPEG copies from the camera's buffer to the socket ({jpeg.label}, tracemalloc)",
        f"{copies} ({peak_bytes / 1e6:.2f} MB allocated)",
        target=f"<= {COPIES_TARGET}",
        met=copies <= COPIES_TARGET,
    )


def table_rows(jpegs: list[Jpeg], results: dict[str, list[Sample]], peak_bytes: int) -> list[Row]:
    rows = []
    for jpeg in jpegs:
        rows += shot_rows(jpeg, results[f"snap.py {jpeg.name}"], results[f"floor {jpeg.name}"])
    if len(jpegs) > 1:
        rows.append(held_copies_row(jpegs, results))
    return rows + command_rows(results) + [copies_row(jpegs[-1], peak_bytes)]


def cpu_model() -> str:
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    # "Model" is the board on a Raspberry Pi, where arm64 kernels give no "model name".
    return fields.get("Model") or fields.get("model name") or platform.machine()


def heading(runs: int, redis_version: str, load: float) -> str:
    cpus = len(os.sched_getaffinity(0))  # what nproc prints
    medians = f"medians of {runs} runs" if runs > 1 else "1 run"
    return (
        f"snap.py benchmark, {medians}: {cpus} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}, Redis {redis_version}, "
        f"load average {load:.2f} before\n"
        "floor: the same fake-camera capture, then one bare MULTI/EXEC of HSET+EXPIRE; "
        "ratio: median of the ratios of runs made one after the other"
    )


def render(title: str, rows: list[Row]) -> str:
    lines = [
        title,
        "",
        "| case | snap.py | floor | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        target = f"{row.target} {'PASS' if row.met else 'over'}" if row.target else ""
        lines.append(f"| {row.label} | {row.snap} | {row.floor} | {ratio} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]  # other work on the machine makes wall times noisy
    with tempfile.TemporaryDirectory(prefix="snap-benchmark-") as temp:
        workdir = Path(temp)
        scripts = write_scripts(workdir)
        jpegs = [noise_jpeg(workdir, megabytes) for megabytes in sorted(set(args.sizes))]
        server = start_redis(workdir / "redis")
        try:
            client = server.client()
            redis_version = client.info("server")["redis_version"]
            cases = all_cases(scripts, jpegs, workdir, server.url)
            results = measure(cases, args.runs, scripts.launcher, client.flushall)
            peak_bytes = copies_peak(scripts, shot_env(workdir, server.url, jpegs[-1]))
        finally:
            server.stop()
    rows = table_rows(jpegs, results, peak_bytes)
    print(render(heading(args.runs, redis_version, load), rows))
    return 1 if args.strict and not all(row.met for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
