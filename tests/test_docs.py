"""The documentation: a short front page, links that lead somewhere, snap's own exit codes,
and the commands a newcomer copies, run as written."""

from __future__ import annotations

import os
import re
import shutil
import site
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAKE_CAMERA, ROOT, make_app, make_venv

from snapcam.config import SETTINGS
from snapcam.errors import EXIT_CODES

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 220


def prose(document: Path) -> str:
    """The document without its fenced code blocks, where brackets are not links."""
    return re.sub(r"^ *```.*?^ *```", "", document.read_text(), flags=re.MULTILINE | re.DOTALL)


def relative_links(document: Path) -> list[str]:
    """The targets of its inline links and images, and of its reference definitions, that
    name no scheme (http:, mailto:, ...)."""
    text = prose(document)
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", text)
    targets += re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", text, flags=re.MULTILINE)
    return [target for target in targets if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target)]


def section(text: str, heading: str) -> str:
    """The lines under a `## heading`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def test_readme_is_a_front_page_of_at_most_220_lines():
    lines = README.read_text().splitlines()

    assert len(lines) <= README_MAX_LINES


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: path.name)
def test_every_relative_link_resolves_to_an_existing_file(document):
    broken = [
        target
        for target in relative_links(document)
        if not (document.parent / (target.partition("#")[0] or document.name)).is_file()
    ]

    assert broken == []


def heading_anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the document's headings."""
    headings = re.findall(r"^#+ (.+)$", prose(document), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: path.name)
def test_every_anchor_names_a_heading_of_its_page(document):
    missing = [
        target
        for target in relative_links(document)
        if "#" in target
        and target.partition("#")[2]
        not in heading_anchors(document.parent / (target.partition("#")[0] or document.name))
    ]

    assert missing == []


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: path.name)
def test_a_link_named_after_a_section_carries_its_anchor(document):
    links = re.findall(r"\[([^\]]+)\]\(([^)\s#]+\.md)\)", prose(document))

    unanchored = [
        (text, target)
        for text, target in links
        if re.sub(r"\s+", " ", text).lower().replace(" ", "-").replace(",", "")
        in heading_anchors(document.parent / target) - {title_anchor(document.parent / target)}
    ]

    assert unanchored == []


def title_anchor(document: Path) -> str:
    title = document.read_text().splitlines()[0].lstrip("# ")
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_failures_page_lists_the_exit_codes_of_snap():
    table = section((ROOT / "docs" / "failures.md").read_text(), "Exit codes")

    documented = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)]

    assert documented == [code for code, _meaning in EXIT_CODES]


def code_lines(document: Path, start: str) -> list[str]:
    """The lines of the document's code blocks that start with start."""
    blocks = re.findall(r"^ *```\w*\n(.*?)^ *```", document.read_text(), re.M | re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(start)]


def install_command() -> list[str]:
    """The steps of the README's one-command install."""
    [command] = [line for line in code_lines(README, "sudo apt install") if " && " in line]
    return command.split(" && ")


def sh(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_readme_install_installs_redis_server_where_snap_looks_for_it_by_default():
    apt = install_command()[0].split()

    assert SETTINGS["REDIS_URL"].default == "redis://localhost:6379"
    assert "redis-server" in apt and "redis-tools" in apt


def test_readme_install_makes_env_readable_by_its_owner_alone(tmp_path):
    [step] = [part for part in install_command() if "env.example" in part]
    shutil.copy(ROOT / "env.example", tmp_path)

    result = sh(step, tmp_path)

    assert result.returncode == 0
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert (tmp_path / ".env").read_text() == (ROOT / "env.example").read_text()


def test_readme_install_keeps_an_existing_env(tmp_path):
    [step] = [part for part in install_command() if "env.example" in part]
    shutil.copy(ROOT / "env.example", tmp_path)
    (tmp_path / ".env").write_text("REDIS_URL=redis://redis.example.net:6379\n")

    result = sh(step, tmp_path)

    assert result.returncode == 0
    assert (tmp_path / ".env").read_text() == "REDIS_URL=redis://redis.example.net:6379\n"


@pytest.fixture
def pc_checkout(tmp_path) -> Path:
    """A checkout on a PC, as the README's way to try snap without a camera sets it up: a
    .venv with snap's packages and Pillow, and tests/fake beside snap.py."""
    app = make_app(tmp_path / "snap").parent
    make_venv(app, sys.executable, site.getsitepackages())
    (app / "tests").mkdir()
    (app / "tests" / "fake").symlink_to(FAKE_CAMERA)
    return app


@pytest.mark.parametrize(
    "line",
    code_lines(README, "PYTHONPATH=tests/fake")
    + code_lines(ROOT / "docs" / "development.md", "PYTHONPATH=tests/fake"),
)
def test_trying_snap_without_a_camera_works_as_written(pc_checkout, camera_dir, line):
    result = sh(line, pc_checkout, FAKE_CAMERA_DIR=str(camera_dir), LOCK_DIR=str(camera_dir))

    if "FAKE_CAMERA_FAULTS=hang-capture" in line:
        assert result.returncode == 69
        assert result.stderr.startswith("snap: error: camera hung: no picture within")
    else:
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"captured .+; not stored \(dry run\)\n", result.stdout)
    if "--output shot.jpg" in line:
        assert (pc_checkout / "shot.jpg").read_bytes()[:2] == b"\xff\xd8"
