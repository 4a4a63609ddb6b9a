"""_workers.bound_heap: glibc's mmap threshold is fixed once per process, when the stages
are built, unless the user chose one (MALLOC_MMAP_THRESHOLD_)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CODE = """
from streamanon import _workers
from streamanon.config import PipelineConfig
from streamanon.pipeline import Stages
before = _workers._heap_bounded
Stages(PipelineConfig(), detector=lambda images: [])
print(before, _workers._heap_bounded, _workers.bound_heap())
"""


def run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env.update(env_extra, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    return r.stdout.split("\n")[-2]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_stages_fix_the_mmap_threshold_once() -> None:
    assert run({}) == "None True True"


def test_a_threshold_chosen_by_the_user_is_kept() -> None:
    assert run({"MALLOC_MMAP_THRESHOLD_": "1048576"}) == "None False False"
