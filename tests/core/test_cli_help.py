"""``streamanon --help`` names every subcommand, each with a line saying what it does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from streamanon.cli import SUBCOMMAND_HELP, SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[2]


def test_every_subcommand_has_a_help_line() -> None:
    assert set(SUBCOMMAND_HELP) == set(SUBCOMMANDS)
    assert all(len(text) > 10 for text in SUBCOMMAND_HELP.values())
    assert len(SUBCOMMANDS) >= 7


def test_help_names_every_subcommand() -> None:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "streamanon", "--help"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("usage: streamanon INPUT")
    for name in SUBCOMMANDS:
        line = re.search(rf"^  {re.escape(name)} +(.+)$", out, re.M)
        assert line is not None, f"{name} missing from streamanon --help"
        assert line.group(1) == SUBCOMMAND_HELP[name]
    assert "Exit codes: 0 ok" in out
