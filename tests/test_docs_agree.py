"""The docs agree with themselves and with the code: one list of characters to
percent-encode, the exit codes of --help, the files the timer units are, the prefix to keep,
each variable told once, and what the units' comments point to."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from helpers import ROOT

from snapcam.cli import build_parser
from snapcam.config import check_redis_url
from snapcam.envfile import OTHER_VARIABLES
from snapcam.errors import EXIT_CODES
from snapcam.units import TEMPLATE_CHECKOUT, UNIT_FILES

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
TEXTS = [README, *DOCS, ROOT / "env.example"]
NUMBERS = {"four": 4, "six": 6, "eight": 8, "ten": 10}


def plain(text: str) -> str:
    """Markdown text as words: no backticks, one space between words."""
    return re.sub(r"\s+", " ", text.replace("`", "")).strip()


def paragraphs(path: Path) -> list[str]:
    return [plain(paragraph) for paragraph in re.split(r"\n\s*\n", path.read_text())]


def section(text: str, heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no '{heading}' section"
    return match.group(1)


def help_text() -> str:
    return build_parser().format_help()


# --- Percent-encoding ------------------------------------------------------------


def test_every_page_names_the_same_characters_to_percent_encode():
    lists = {
        (path.name, " ".join(re.findall(r"`([^`%])`", sentence)) or "?")
        for path in TEXTS
        for sentence in re.split(r"\.\s", path.read_text())
        if "percent-encode" in sentence.lower() and "password" in sentence
    }

    assert {characters for _name, characters in lists} == {"/ ? # @"}, lists
    assert {name for name, _characters in lists} >= {"configuration.md", "deployments.md"}


def test_the_code_names_the_characters_the_docs_name():
    with pytest.raises(ValueError, match="percent-encoded") as refused:
        check_redis_url("redis://user:pa#ss@host:6379")

    assert str(refused.value).startswith("a /, ?, # or @ in a password must be percent-encoded")


def test_a_colon_in_a_password_needs_no_encoding():
    assert check_redis_url("redis://user:pa:ss@host:6379")


# --- Exit codes ------------------------------------------------------------------------


def test_the_readmes_exit_codes_are_those_of_help():
    text = section(README.read_text(), "When it fails")
    items = re.findall(r"^- `(\d+)` (.+?)(?=^- |^\n)", text, re.M | re.S)

    documented = [(int(code), plain(meaning)) for code, meaning in items]

    assert documented == [(code, meaning) for code, meaning in EXIT_CODES]


def test_the_failures_pages_exit_codes_are_those_of_help():
    table = section((ROOT / "docs" / "failures.md").read_text(), "Exit codes")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", table, re.M)

    documented = [(int(code), plain(meaning)) for code, meaning in rows]

    assert documented == [(code, meaning) for code, meaning in EXIT_CODES]


def test_help_lists_every_exit_code_with_its_meaning():
    shown = plain(help_text())

    assert all(f"{code} {meaning}" in shown for code, meaning in EXIT_CODES)


# --- The units ---------------------------------------------------------------------


def test_the_install_line_of_the_timers_page_names_every_file_written():
    [line] = [
        line
        for line in (ROOT / "docs" / "timers.md").read_text().splitlines()
        if line.startswith("installed ")
    ]

    assert line.startswith(f"installed {', '.join(UNIT_FILES)} in /etc/systemd/system ")


def test_uninstall_counts_the_files_it_removes_as_the_install_writes_them():
    text = plain(section((ROOT / "docs" / "timers.md").read_text(), "Stopping and uninstalling"))

    [count] = re.findall(r"removes the (\w+) files", text)

    assert NUMBERS[count] == len(UNIT_FILES)


def test_help_names_no_unit_list_that_could_fall_behind():
    # --help said the four units while six files were written: it names none now, and the
    # docs list them.
    text = plain(help_text())

    assert not [name for name in UNIT_FILES if name in text]


def test_the_units_point_to_docs_that_exist():
    for path in (ROOT / "timers").rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        for document in re.findall(rf"^Documentation=file://{TEMPLATE_CHECKOUT}/(\S+)", text, re.M):
            assert (ROOT / document).is_file(), (path, document)
        for heading, document in re.findall(r'"([^"]+)" in (docs/\w+\.md)', text):
            assert re.search(rf"^#+ {re.escape(heading)}$", (ROOT / document).read_text(), re.M)


# --- Settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [README, ROOT / "env.example", ROOT / "docs" / "timers.md", ROOT / "docs" / "configuration.md"],
    ids=lambda path: path.name,
)
def test_no_page_but_the_prefix_pages_suggests_a_prefix_the_scan_front_end_misreads(path):
    # storage.md and deployments.md tell the prefix per Pi with what it costs.
    text = path.read_text()
    suggestions = re.findall(r"IMAGE_KEY_PREFIX=image:\w+|e\.g\. `?image:[A-Za-z]\w*`?", text)

    assert suggestions == []


def test_env_example_tells_each_variable_that_is_no_setting_once():
    text = (ROOT / "env.example").read_text()

    told = {name: len(re.findall(rf"(?<![$\w]){name}\b", text)) for name in OTHER_VARIABLES}

    assert told == dict.fromkeys(OTHER_VARIABLES, 1)


def test_the_configuration_page_names_every_variable_that_is_no_setting():
    text = (ROOT / "docs" / "configuration.md").read_text()

    assert [name for name in OTHER_VARIABLES if f"`{name}`" not in text] == []


# --- The rest ----------------------------------------------------------------------------


def test_the_performance_page_says_which_targets_are_missed():
    text = (ROOT / "docs" / "performance.md").read_text()
    latest = section(text, "Latest run")
    missed = re.findall(r"^\| ([^|]+?) \|.*\bover \|$", latest, re.M)
    prose = " ".join(line for line in latest.splitlines() if not line.startswith("|"))

    assert [row for row in missed if row not in prose] == []


def test_files_the_docs_tell_to_write_are_ignored_by_git():
    written = {
        name
        for path in [README, *DOCS]
        for name in re.findall(r"(?:--output |> )(\w+\.jpg)\b", path.read_text())
    }
    patterns = (ROOT / ".gitignore").read_text().split()

    assert written >= {"aim.jpg", "shot.jpg"}
    assert [name for name in written if not any(fnmatch.fnmatch(name, p) for p in patterns)] == []


def test_verbose_is_described_alike_by_help_and_the_docs():
    options = plain((ROOT / "docs" / "configuration.md").read_text())

    assert "show each step's time, the exposure, libcamera's log and error tracebacks" in plain(
        help_text()
    )
    assert "-v, --verbose | show each step of a run with its time since the start, the frame" in (
        options
    )
