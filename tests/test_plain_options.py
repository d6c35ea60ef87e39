"""A command line of plain flags (a timer's, cron's) is read without argparse, exactly as the
full parser reads it; any other goes to the parser."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from helpers import ROOT

from snapcam import cli

PLAIN_LINES = [
    list(line)
    for size in range(4)
    for line in itertools.permutations(sorted(cli.PLAIN_FLAGS), size)
    if cli.plain_options(list(line)) is not None
]


def test_plain_options_cover_every_plain_flag_and_their_mixes():
    assert [] in PLAIN_LINES and ["--quiet", "--json"] in PLAIN_LINES
    assert {flag for line in PLAIN_LINES for flag in line} == set(cli.PLAIN_FLAGS)


@pytest.mark.parametrize("argv", PLAIN_LINES, ids=" ".join)
def test_plain_flags_read_as_the_full_parser_reads_them(argv):
    assert vars(cli.plain_options(argv)) == vars(cli.build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["-q", "-v"],
        ["--quiet", "--verbose"],
        ["--quiet", "--quiet"],
        ["-qv"],
        ["--qui"],
        ["--help"],
        ["--check"],
        ["--output", "shot.jpg"],
        ["--json", "--status"],
        ["extra"],
    ],
    ids=" ".join,
)
def test_other_command_lines_are_left_to_the_full_parser(argv):
    assert cli.plain_options(argv) is None


def test_shot_with_plain_flags_imports_neither_argparse_nor_the_status_listing(snap_env):
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from snapcam import cli\n"
        'code = cli.main(["--quiet", "--json"])\n'
        'print(code, sorted({"argparse", "snapcam.watch"} & set(sys.modules)))\n'
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        env=snap_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stdout.splitlines()[-1] == "0 []", result.stderr
