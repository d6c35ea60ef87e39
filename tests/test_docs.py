"""The documentation: a short front page, links that lead somewhere, snap's own exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

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


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: path.name)
def test_relative_links_carry_no_anchor(document):
    anchored = [target for target in relative_links(document) if "#" in target]

    assert anchored == []


def test_failures_page_lists_the_exit_codes_of_snap():
    table = section((ROOT / "docs" / "failures.md").read_text(), "Exit codes")

    documented = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)]

    assert documented == [code for code, _meaning in EXIT_CODES]
