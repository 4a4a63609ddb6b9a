"""Progress off a terminal: a log line every few seconds for file runs (frames, fps, eta) and
a "still running" line for long eval commands (issue 22: ``eval identity`` ran 4 min silent)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamanon.progress import Progress, heartbeat

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"streamanon: \S+: \d+/\d+ frames \(\d+%\), \d+\.\d fps, eta \d+ (s|min)")


@pytest.fixture(autouse=True)
def _cli_levels() -> Iterator[None]:
    """As the CLI logs: the root at WARNING; a handler (caplog's) that takes every level."""
    root, progress = logging.getLogger(), logging.getLogger("streamanon.progress")
    old = root.level, progress.level
    root.setLevel(logging.WARNING)
    progress.setLevel(logging.NOTSET)
    yield
    root.setLevel(old[0])
    progress.setLevel(old[1])


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_off_a_terminal_a_line_every_interval_with_frames_fps_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()  # the root logs at WARNING, as in the CLI: progress lines still get through
    p = Progress(300, "clip.mp4", True, every=5.0, stream=io.StringIO(), clock=clock)
    for _ in range(90):  # 16 fps (exact in binary): 5 s at the 80th frame
        clock.t += 0.0625
        p.update()
    p.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "streamanon.progress"]
    assert lines == ["clip.mp4: 80/300 frames (27%), 16.0 fps, eta 14 s"]


def test_quiet_and_terminal_runs_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for p in (
        Progress(10, "a", False, every=0.0, stream=io.StringIO(), clock=clock),
        Progress(10, "b", True, every=0.0, stream=Tty(), clock=clock),  # a tqdm bar instead
    ):
        for _ in range(10):
            clock.t += 1
            p.update()
        p.close()
    assert not [r for r in caplog.records if r.name == "streamanon.progress"]


def test_heartbeat_logs_while_the_block_runs(caplog: pytest.LogCaptureFixture) -> None:
    with heartbeat("eval identity", every=0.05):
        time.sleep(0.4)
    lines = [r.getMessage() for r in caplog.records if r.name == "streamanon.progress"]
    assert len(lines) >= 2 and all(m.startswith("eval identity: still running (") for m in lines), lines


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)


def test_file_run_with_stderr_not_a_terminal_logs_progress(tmp_path: Path, data_dir: Path) -> None:
    # the interval is shortened (the run may take under 5 s on a fast machine); stderr is a pipe
    code = "import sys, streamanon.progress as p; p.PROGRESS_EVERY_S = 0.2; from streamanon.cli import main; "
    code += "sys.exit(main(sys.argv[1:]))"
    clip = data_dir / "videos" / "intel_asl_gestures" / "thanks.mkv"
    p = _run(code, str(clip), "-o", str(tmp_path / "o.mp4"), "--backend", "onnxruntime")
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stderr.splitlines() if LINE.fullmatch(line)]
    assert lines, p.stderr
    assert all("/51 frames" in line for line in lines)


def test_eval_command_off_a_terminal_says_it_is_still_running(tmp_path: Path, data_dir: Path) -> None:
    code = "import sys, streamanon.progress as p; p.HEARTBEAT_EVERY_S = 0.2; from streamanon.cli import main; "
    code += "sys.exit(main(sys.argv[1:]))"
    faces = data_dir / "detection_gt" / "dlib_examples_faces"
    p = _run(
        code, "eval", "detect", "--images", str(faces), "--annotations", str(faces / "testing.xml"),
        "--backend", "onnxruntime", "--det-size", "320", "--json", str(tmp_path / "d.json"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert re.search(r"streamanon: eval detect: still running \(\d+ s\)", p.stderr), p.stderr
