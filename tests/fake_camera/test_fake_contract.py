"""The fake picamera2 offers nothing that the real picamera2 lacks or spells differently.

The real package comes from PyPI without its native parts (libcamera, pykms, prctl, pidng are
stubbed in tests/fake_camera/contract/stubs) and is only imported, in a subprocess of its own.
Set SNAP_OFFLINE=1 to skip these tests where PyPI cannot be reached.
"""

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The versions the fake models (FAKE_PICAMERA2_VERSION), each checked against PyPI's own.
PICAMERA2_VERSIONS = ("0.3.12", "0.3.19", "0.3.30", "0.3.38")
# PyPI has no 0.3.19: the nearest before it (its signatures are 0.3.19's: git diff v0.3.18
# v0.3.19 changes no def of picamera2.py or job.py), still without timeouts.
ON_PYPI = {"0.3.19": "0.3.18"}
# Imported by `import picamera2` and installable from wheels; the rest are stubs.
IMPORT_DEPENDENCIES = ["numpy", "pillow", "simplejpeg", "piexif", "videodev2", "v4l2-python3"]
TESTS = Path(__file__).resolve().parent.parent
CONTRACT = Path(__file__).resolve().parent / "contract"
CACHE = TESTS / ".cache"


@functools.cache  # one attempt per version and session, even when it fails
def install_real_picamera2(version: str):
    """The folder holding picamera2 and its import-time dependencies, or pip's complaint."""
    cached = CACHE / f"picamera2-{version}-{sys.implementation.cache_tag}-{platform.machine()}"
    if (cached / "picamera2" / "__init__.py").exists():
        return cached, None
    CACHE.mkdir(exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=CACHE, prefix="installing-"))
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--only-binary=:all:",
            "--target",
            str(target),
            f"picamera2=={version}",
            *IMPORT_DEPENDENCIES,
        ],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return None, f"pip could not install picamera2 {version}:\n{pip.stderr[-3000:]}"
    try:
        target.rename(cached)
    except OSError:  # another run got there first
        shutil.rmtree(target, ignore_errors=True)
    return cached, None


def describe(side: str, pythonpath: list, version: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "FAKE_PICAMERA2_VERSION": version,
    }
    completed = subprocess.run(
        [sys.executable, "-s", str(CONTRACT / "describe_api.py"), side],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.fixture(scope="module", params=PICAMERA2_VERSIONS)
def version(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def real(version):
    installed, error = install_real_picamera2(ON_PYPI.get(version, version))
    if error and os.environ.get("SNAP_OFFLINE") == "1":
        pytest.skip(error)
    if error:
        pytest.fail(error + "\n(set SNAP_OFFLINE=1 to skip the contract tests offline)")
    return describe("real", [installed, CONTRACT / "stubs"], version)


@pytest.fixture(scope="module")
def fake(version):
    return describe("fake", [TESTS / "fake"], version)


def test_every_fake_picamera2_member_exists_in_real_picamera2(real, fake):
    missing = sorted(set(fake["Picamera2"]) - set(real["Picamera2"]))
    assert missing == []


def test_fake_members_are_the_same_kind_with_the_same_signature(real, fake):
    differences = {
        name: {"fake": member, "real": real["Picamera2"][name]}
        for name, member in fake["Picamera2"].items()
        if name in real["Picamera2"] and member != real["Picamera2"][name]
    }
    assert differences == {}


def test_global_camera_info_is_a_staticmethod_without_arguments(real, fake):
    expected = {"kind": "staticmethod", "signature": []}
    assert real["Picamera2"]["global_camera_info"] == expected
    assert fake["Picamera2"]["global_camera_info"] == expected


def test_fake_instance_attributes_are_set_by_real_picamera2(real, fake):
    assert "sensor_resolution" in fake["instance_attributes"]
    assert set(fake["instance_attributes"]) - set(real["instance_attributes"]) == set()


def test_fake_module_names_are_real_picamera2_names(real, fake):
    assert ("TimeoutError" in fake["module"]) == ("TimeoutError" in real["module"])
    differences = {
        name: {"fake": kind, "real": real["module"].get(name)}
        for name, kind in fake["module"].items()
        if name not in real["module"]
        or ("picamera2" not in kind and kind != real["module"][name])  # same class object
    }
    assert differences == {}


def test_fake_job_methods_match_real_job(real, fake):
    assert {name: real["Job"].get(name) for name in fake["Job"]} == fake["Job"]


def test_fake_and_real_agree_on_each_case(real, fake):
    differences = {
        case: {"fake": fake["cases"][case], "real": result}
        for case, result in real["cases"].items()
        if fake["cases"][case] != result
    }
    assert differences == {}
