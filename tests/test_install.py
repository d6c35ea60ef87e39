"""The README's install, run offline: pip installs snap's own dependencies and never reaches
for picamera2's, which the apt package declares but apt need not have installed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

CACHE = ROOT / "tests" / ".cache"
# What Bullseye's python3-picamera2 (0.3.12-2) declares (its setup.py install_requires).
APT_PICAMERA2_REQUIRES = [
    "numpy",
    "PiDNG",
    "piexif",
    "pillow",
    "simplejpeg",
    "v4l2-python3",
    "python-prctl",
]


def readme_steps() -> list[str]:
    """The venv and pip lines of the README's step-by-step install."""
    text = (ROOT / "README.md").read_text()
    lines = [line.strip() for line in text.splitlines()]
    venv = next(line for line in lines if line.startswith("python3 -m venv --system-site"))
    pip = next(line for line in lines if line.startswith(".venv/bin/pip install"))
    return [venv, pip]


@pytest.fixture(scope="module")
def wheels() -> Path:
    """snap's own dependencies as wheels, fetched once into the test cache."""
    directory = CACHE / f"wheels-{sys.implementation.cache_tag}"
    if not any(directory.glob("redis-*.whl")):
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(directory), "-r", str(ROOT / "requirements.txt")],
            capture_output=True, text=True,
        )  # fmt: skip
        if fetched.returncode != 0:
            pytest.skip(f"cannot fetch snap's wheels: {fetched.stderr[-500:]}")
    return directory


def apt_dist_packages(site: Path) -> Path:
    """A dist-packages holding picamera2 as apt installs it: an egg-info that declares
    dependencies none of which are installed."""
    (site / "picamera2").mkdir(parents=True)
    (site / "picamera2" / "__init__.py").write_text("")
    info = site / "picamera2-0.3.12.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: picamera2\nVersion: 0.3.12\n")
    (info / "requires.txt").write_text("\n".join(APT_PICAMERA2_REQUIRES) + "\n")
    return site


def test_requirements_name_only_snaps_own_dependencies():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = {
        re.split(r"[<>=;\s\[]", line, maxsplit=1)[0].lower() for line in lines if line[:1].isalnum()
    }

    assert names == {"redis", "environs"}


def test_readme_install_succeeds_offline_beside_an_apt_picamera2(tmp_path, wheels):
    dist_packages = apt_dist_packages(tmp_path / "dist-packages")
    venv_line, pip_line = readme_steps()
    script = "\n".join(
        [
            "set -e",
            venv_line.replace("python3", sys.executable, 1),
            # What --system-site-packages shows the venv on a Pi: apt's dist-packages.
            f"echo {dist_packages} > $(echo .venv/lib/python3*/site-packages)/apt.pth",
            f"{pip_line} --no-index --find-links {wheels} --disable-pip-version-check",
            ".venv/bin/python -c 'import picamera2, redis, environs'",
        ]
    )
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())

    result = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-2000:]
