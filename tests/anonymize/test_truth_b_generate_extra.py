"""``--method generate`` without the ``align`` extra: the exact requirement, exit 9, before
any output; the help says which methods need an extra (issue 22)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamanon.cli import run_parser

# Runs the CLI with some top-level packages made absent (not importable, not found).
_WITHOUT = """
import importlib.abc, importlib.util, sys
BLOCK = set(sys.argv[1].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Absent())
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in BLOCK else _find(name, package)
from streamanon.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("absent", ["dlib", "face_recognition_models"])
def test_generate_without_the_align_extra_says_exactly_what_to_install(
    tmp_path: Path, data_dir: Path, absent: str
) -> None:
    out = tmp_path / "o.mp4"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    clip = data_dir / "videos" / "intel_asl_gestures" / "thanks.mkv"
    p = subprocess.run(
        [sys.executable, "-c", _WITHOUT, absent, str(clip), "-o", str(out), "--method", "generate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 9, p.stderr
    assert "--method generate requires 'pip install streamanon[align]'" in p.stderr
    assert f"{absent} is not installed" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_help_names_the_extra_of_each_method_that_needs_one() -> None:
    text = " ".join(run_parser().format_help().split())
    assert "generate requires 'pip install streamanon[align]'" in text
    assert "adversarial 'pip install streamanon[torch]'" in text
