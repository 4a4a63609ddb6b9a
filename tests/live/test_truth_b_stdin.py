"""Stdin that is not a real-time feed never drops frames (issue 22: ``cat x | streamanon -``
wrote 1 of 51 frames); ``--live`` says it is one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from streamanon.cli import run_parser
from streamanon.io.source import drops_frames
from streamanon.live import LiveOptions

CLIP = "videos/intel_asl_gestures/thanks.mkv"  # 51 frames, one signer


@pytest.mark.parametrize(
    ("uri", "live", "drops"),
    [
        ("-", False, False),
        ("-", True, True),
        ("rtsp://127.0.0.1:8554/cam", False, True),
        ("/dev/video0", False, True),
        ("udp://127.0.0.1:1234", False, True),
    ],
)
def test_only_real_time_inputs_drop(uri: str, live: bool, drops: bool) -> None:
    assert drops_frames(uri, live) is drops


@pytest.mark.parametrize(
    ("argv", "drop"),
    [
        (["-", "-o", "o.mp4"], False),
        (["-", "-o", "o.mp4", "--live"], True),
        (["-", "-o", "o.mp4", "--live", "--no-drop"], False),
        (["rtsp://127.0.0.1:8554/cam", "-o", "o.mp4"], True),
        (["rtsp://127.0.0.1:8554/cam", "-o", "o.mp4", "--no-drop"], False),
    ],
)
def test_parsed_options_follow_the_rule(argv: list[str], drop: bool) -> None:
    assert LiveOptions.from_namespace(run_parser().parse_args(argv)).drop is drop


def test_live_flag_is_refused_on_a_file_input(tmp_path: Path, data_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = tmp_path / "o.mp4"
    p = subprocess.run(
        [sys.executable, "-m", "streamanon", str(data_dir / CLIP), "-o", str(out), "--live"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "--live" in p.stderr and not out.exists()


def test_a_file_piped_into_stdin_keeps_every_frame(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / CLIP
    with av.open(str(src)) as c:
        n_in = sum(1 for _ in c.decode(video=0))
    out = tmp_path / "out.mp4"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE) as cat:
        p = subprocess.run(
            [sys.executable, "-m", "streamanon", "-", "-o", str(out), "--input-format", "matroska"],
            stdin=cat.stdout,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert cat.stdout is not None
        cat.stdout.close()
    assert p.returncode == 0, p.stderr
    with av.open(str(out)) as c:
        n_out = sum(1 for _ in c.decode(video=0))
    assert n_out == n_in == 51, p.stderr
    assert " 0 dropped" in p.stderr, p.stderr
