#!/usr/bin/env python3
"""What a shot costs: snap.py against the seed's own capture code run once, on request.

    python3 tests/benchmark.py [--runs N] [--sizes MB [MB ...]] [--strict] [--write-docs]

The fake camera (tests/fake) is given a camera's timing (start() takes 0.25 s, frames come at
30 fps, exposure converges on frame 6) and hands over a pre-encoded JPEG of random noise of
each size, so no encoding is timed. Every case is its own process, snap.py run as
`python3 snap.py`. The floor is the seed's capture code run once: open the camera, a still
configuration, start, wait until exposure converges, capture_file into a BytesIO, close, one
MULTI/EXEC of HSET and EXPIRE, exit. Wall time, CPU time (user plus system) and peak RSS are
compared as medians of paired ratios. Targets are marked PASS or over; only with --strict does
a target over make the exit code 1. A timeline of the shot nearest 5 MB follows (tests/timeline.py):
when the camera was open, closed, the shot stored and the process gone, for both.
--write-docs puts both tables into docs/performance.md.
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
import timeline  # noqa: E402
from helpers import FAKE_CAMERA, ROOT, down_redis_url, make_app, start_redis  # noqa: E402

# snap.py / floor at every size
TARGETS = {"wall": 0.90, "CPU": 1.05, "peak RSS": 1.05}
HELP_TARGET = 1.2  # snap.py --help / python3 -c "import environs"
ERROR_TARGET = 1.0  # a failed run / a stored one, wall time
COPIES_TARGET = 1  # JPEG copies between the camera's buffer and the socket
# A Raspberry Pi camera, as the fake camera plays it.
CAMERA_TIMING = {
    "FAKE_CAMERA_START_SECONDS": "0.25",
    "FAKE_CAMERA_FPS": "30",
    "FAKE_CAMERA_SETTLED_FRAME": "6",
}
DOCS = ROOT / "docs" / "performance.md"
TABLE_START = "<!-- benchmark table: written by tests/benchmark.py --write-docs -->"
TABLE_END = "<!-- end of benchmark table -->"

# The seed's capture code (its loop run once), with the settle wait it lacked.
FLOOR_SCRIPT = """\
import io
import os
import time

import redis
from picamera2 import Picamera2

redis_client = redis.from_url(os.getenv("REDIS_URL", "redis://localhost:6379"))
picam2 = Picamera2()
size = (int(os.getenv("IMAGE_WIDTH")), int(os.getenv("IMAGE_HEIGHT")))
picam2.configure(picam2.create_still_configuration(main={"size": size}))
picam2.start()
while picam2.capture_metadata().get("AeState") != 2:
    pass
image_data = io.BytesIO()
image_metadata = picam2.capture_file(image_data, format="jpeg")
current_timestamp = int(time.time())
picam2.close()
redis_key = f"image:{current_timestamp}"
data_to_save = {
    "image_data": image_data.getvalue(),
    "timestamp": current_timestamp,
    "mime_type": "image/jpeg",
    "lux": int(image_metadata["Lux"]),
}
pipe = redis_client.pipeline(transaction=True)
pipe.hset(redis_key, mapping=data_to_save)
pipe.expire(redis_key, int(os.getenv("IMAGE_EXPIRY", "3600")))
pipe.execute()
"""

# Runs one case and prints its wall time, CPU time, peak RSS in KiB, exit code, and the
# time.time() it was started and gone at (for the timeline). A process
# of its own, small, because Linux counts in a child's ru_maxrss the RSS it had when forked:
# forked from the benchmark, every case would report at least the benchmark's own size.
LAUNCHER_SCRIPT = """\
import os
import sys
import time

began, started = time.time(), time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds, ended = time.perf_counter() - started, time.time()
cpu = usage.ru_utime + usage.ru_stime
print(seconds, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status), began, ended)
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
    cpu_seconds: float
    peak_rss_kib: int
    span: timeline.Span = timeline.Span(0.0, 0.0)


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    env: dict[str, str]
    exit_code: int = 0


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


@dataclass(frozen=True)
class Measure:
    name: str
    show: Callable[[float], str]
    value: Callable[[Sample], float]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def mb(kib: float) -> str:
    return f"{kib * 1024 / 1e6:.1f} MB"


MEASURES = (
    Measure("wall", ms, lambda sample: sample.seconds),
    Measure("CPU", ms, lambda sample: sample.cpu_seconds),
    Measure("peak RSS", mb, lambda sample: sample.peak_rss_kib),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tests/benchmark.py",
        description="Time snap.py and measure its memory against the seed's capture code.",
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
    parser.add_argument(
        "--write-docs", action="store_true", help=f"put the table into {DOCS.relative_to(ROOT)}"
    )
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


def with_exif(jpeg: bytes) -> bytes:
    """The JPEG with an EXIF segment spliced in after its first two bytes, as picamera2 0.3.26
    and later write a camera module's shot (request.py save()); the fake camera then hands
    it over in picamera2's three writes."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Raspberry Pi"  # Make
    exif[0x0131] = "Picamera2"  # Software
    segment = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment + jpeg[2:]


def noise_jpeg(directory: Path, megabytes: float) -> Jpeg:
    """A 4:3 JPEG of random noise of about `megabytes` MB, with a camera's EXIF segment:
    noise does not compress, so the size follows the pixel count."""
    bytes_per_pixel = len(encoded_noise(256, 256)) / 256**2
    height = max(16, round((megabytes * 1e6 / bytes_per_pixel * 3 / 4) ** 0.5))
    data = with_exif(encoded_noise(height * 4 // 3, height))
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
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(scripts.snap.parent)], check=True)
    return scripts


def shot_env(workdir: Path, redis_url: str, jpeg: Jpeg) -> dict[str, str]:
    """What snap.py and the floor run in: nothing inherited but PATH and HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "PYTHONPATH": str(FAKE_CAMERA),
        "FAKE_CAMERA_DIR": str(workdir),
        "FAKE_CAMERA_JPEG": str(jpeg.path),
        **CAMERA_TIMING,
        # The fake camera draws a frame of this size, which FAKE_CAMERA_JPEG then replaces;
        # tiny, so that neither side pays for it.
        "IMAGE_WIDTH": "64",
        "IMAGE_HEIGHT": "64",
        "REDIS_URL": redis_url,
        "IMAGE_EXPIRY": "600",
        "SPOOL_DIR": str(workdir / "spool"),
        "LOCK_DIR": str(workdir),
    }


def all_cases(scripts: Scripts, jpegs: list[Jpeg], workdir: Path, redis_url: str) -> list[Case]:
    python = sys.executable
    snap = [python, str(scripts.snap), "--quiet"]
    cases = []
    for jpeg in jpegs:
        env = shot_env(workdir, redis_url, jpeg)
        cases.append(Case(f"snap.py {jpeg.name}", snap, env))
        cases.append(Case(f"floor {jpeg.name}", [python, str(scripts.floor)], env))
    env = shot_env(workdir, redis_url, jpegs[0])
    unreachable = {
        **env,
        "REDIS_URL": down_redis_url(),
        "SPOOL_DIR": str(workdir / "unsent"),  # not delivered by the other cases
    }
    return [
        *cases,
        Case("snap.py Redis unreachable", snap, unreachable, os.EX_TEMPFAIL),
        Case("snap.py no camera", snap, {**env, "FAKE_CAMERA_FAULTS": "absent"}, os.EX_UNAVAILABLE),
        Case("snap.py --help", [python, str(scripts.snap), "--help"], env),
        Case("import environs", [python, "-c", "import environs"], env),
        Case("snap.py --check", [python, str(scripts.snap), "--check"], env),
    ]


def run_once(case: Case, launcher: Path) -> Sample:
    """Wall time, CPU time and peak RSS of one run; an unexpected exit code stops the benchmark."""
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(launcher), *case.argv],
        env=case.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    report = completed.stdout.split()
    if completed.returncode != 0 or len(report) != 6 or int(report[3]) != case.exit_code:
        raise SystemExit(f"{case.name} failed: {completed.stderr.strip()}")
    seconds, cpu_seconds, peak_rss_kib, _, began, ended = report
    span = timeline.Span(float(began), float(ended))
    return Sample(float(seconds), float(cpu_seconds), int(peak_rss_kib), span)  # ru_maxrss: KiB


def median(samples: list[Sample], measure: Measure) -> float:
    return statistics.median(measure.value(sample) for sample in samples)


def paired_ratio(snap: list[Sample], floor: list[Sample], measure: Measure) -> float:
    """The median of the ratios of runs of the same round, which ran one after the other:
    a load that comes and goes on the machine weighs on both."""
    return statistics.median(measure.value(s) / measure.value(f) for s, f in zip(snap, floor))


def measure_cases(
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
    return int(completed.stdout.split()[0])  # the shot's store(), not the backlog's


def compared(
    label: str, measure: Measure, snap: list[Sample], floor: list[Sample], limit: float | None
) -> Row:
    """One measure of snap.py and of its floor: medians, and their paired ratio."""
    ratio = paired_ratio(snap, floor, measure)
    shown = measure.show(median(snap, measure)), measure.show(median(floor, measure))
    if limit is None:
        return Row(label, *shown, ratio)
    return Row(label, *shown, ratio, f"<= {limit:.2f}", round(ratio, 2) <= limit)


def shot_rows(jpeg: Jpeg, snap: list[Sample], floor: list[Sample]) -> list[Row]:
    return [
        compared(f"shot {jpeg.label}: {m.name}", m, snap, floor, TARGETS[m.name]) for m in MEASURES
    ]


def held_copies_row(jpegs: list[Jpeg], results: dict[str, list[Sample]]) -> Row:
    """Peak RSS added per JPEG byte from the smallest shot to the largest: the copies of the
    JPEG a process holds at its peak, the camera's own included."""
    small, large = jpegs[0], jpegs[-1]
    rss = MEASURES[2]

    def held(side: str) -> float:
        added_kib = median(results[f"{side} {large.name}"], rss) - median(
            results[f"{side} {small.name}"], rss
        )
        return added_kib * 1024 / (large.size - small.size)

    snap, floor = held("snap.py"), held("floor")
    label = f"JPEGs held at peak RSS (its growth from {small.label} to {large.label})"
    return Row(label, f"{snap:.2f}", f"{floor:.2f}", snap / floor)


def command_rows(jpeg: Jpeg, results: dict[str, list[Sample]]) -> list[Row]:
    wall = MEASURES[0]
    stored = results[f"snap.py {jpeg.name}"]
    return [
        compared(
            f"Redis unreachable, shot spooled: wall (floor: snap.py storing {jpeg.label})",
            wall,
            results["snap.py Redis unreachable"],
            stored,
            ERROR_TARGET,
        ),
        compared(
            f"no camera: wall (floor: snap.py storing {jpeg.label})",
            wall,
            results["snap.py no camera"],
            stored,
            ERROR_TARGET,
        ),
        compared(
            '--help: wall (floor: python3 -c "import environs")',
            wall,
            results["snap.py --help"],
            results["import environs"],
            HELP_TARGET,
        ),
        Row("--check: wall", ms(median(results["snap.py --check"], wall))),
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
    return rows + command_rows(jpegs[0], results) + [copies_row(jpegs[-1], peak_bytes)]


def shot_timelines(
    cases: list[Case], jpeg: Jpeg, runs: int, launcher: Path, workdir: Path, client
) -> str:
    """The timeline table of snap.py and the floor storing `jpeg`."""
    timed = {
        side: Case(case.name, case.argv, {**case.env, "FAKE_CAMERA_TIMES": "1"})
        for case in cases
        for side in ("snap.py", "floor")
        if case.name == f"{side} {jpeg.name}"
    }

    def run(side: str) -> timeline.Span:
        span = run_once(timed[side], launcher).span
        client.flushall()
        return span

    found = timeline.timelines(run, list(timed), runs, workdir / "times.log", client)
    medians = f"medians of {runs} runs" if runs > 1 else "1 run"
    title = (
        f"Timeline of the {jpeg.label} shot, {medians}: milliseconds from the "
        "process started to the camera open and closed (the fake camera's log), the shot "
        "stored (Redis's notification of its EXPIRE) and the process gone"
    )
    return timeline.render(title, found)


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
        "floor: the seed's capture code run once, on the same fake camera (start 0.25 s, "
        "30 fps, converged on frame 6); ratio: median of the ratios of runs made one after "
        "the other"
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


def write_docs(table: str) -> None:
    """Replace the table between the markers in docs/performance.md."""
    text = DOCS.read_text()
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    if not rest or TABLE_END not in rest:
        raise SystemExit(f"{DOCS}: the table markers are missing")
    DOCS.write_text(f"{before}{TABLE_START}\n{table}\n{TABLE_END}{after}")


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
            results = measure_cases(cases, args.runs, scripts.launcher, client.flushall)
            peak_bytes = copies_peak(scripts, shot_env(workdir, server.url, jpegs[-1]))
            nearest_5_mb = min(jpegs, key=lambda jpeg: abs(jpeg.megabytes - 5))
            timelines = shot_timelines(
                cases, nearest_5_mb, args.runs, scripts.launcher, workdir, client
            )
        finally:
            server.stop()
    rows = table_rows(jpegs, results, peak_bytes)
    table = render(heading(args.runs, redis_version, load), rows) + "\n\n" + timelines
    print(table)
    if args.write_docs:
        write_docs(table)
    return 1 if args.strict and not all(row.met for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
