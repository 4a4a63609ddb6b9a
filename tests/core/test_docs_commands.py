"""Every ``streamanon ...`` command in the README's and docs/'s ```sh blocks parses.

Each command line goes through the parser its entry point really uses (``streamanon.cli_reference
.parsed_command``: the subcommand dispatch of ``streamanon.cli.main``), so a renamed or removed
subcommand or flag, or a bad value, fails here. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from streamanon.cli import SUBCOMMANDS
from streamanon.cli_reference import parsed_command

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.M | re.S)


def commands(text: str) -> list[list[str]]:
    """The ``streamanon`` invocations of the shell blocks of a markdown text, as argument lists."""
    out: list[list[str]] = []
    for block in BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            segment: list[str] = []
            for tok in [*tokens, "|"]:
                if tok in ("|", "&&", ";", "||"):
                    if segment[:1] == ["streamanon"]:
                        out.append(segment[1:])
                    elif segment[:3] == ["python3", "-m", "streamanon"]:
                        out.append(segment[3:])
                    segment = []
                else:
                    segment.append(tok)
    return out


def test_commands_are_found() -> None:
    text = "```sh\npip install . && streamanon demo\nffmpeg -i x -f mpegts - | streamanon - -o - | ffplay -\n```\n"
    text += "```text\nstreamanon not-a-shell-block\n```\n"
    assert commands(text) == [["demo"], ["-", "-o", "-"]]


def test_a_bad_flag_is_caught() -> None:
    parser, args = parsed_command(["batch", "in", "-o", "out", "--jobz", "2"])
    with pytest.raises(Exception, match="--jobz"):
        parser.parse_args(args)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_in_the_docs_parses(doc: Path) -> None:
    cmds = commands(doc.read_text(encoding="utf-8"))
    for argv in cmds:
        parser, args = parsed_command(argv)
        if "-h" in args or "--help" in args:
            continue  # the parser exists; --help would print and exit
        try:
            parser.parse_args(args)
        except Exception as exc:  # ConfigError from the product's parsers
            pytest.fail(f"{doc.name}: streamanon {shlex.join(argv)}: {exc}")


def test_the_readme_tour_covers_the_modes() -> None:
    cmds = commands((ROOT / "README.md").read_text(encoding="utf-8"))
    firsts = {argv[0] for argv in cmds if argv}
    assert {"demo", "batch", "streams", "eval"} <= firsts
    assert any(argv and argv[0] not in SUBCOMMANDS for argv in cmds)  # file/folder/live mode
    assert any(argv and argv[0].startswith("rtsp://") for argv in cmds)  # a live feed
