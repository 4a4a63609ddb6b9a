"""Issue 22 (part A): an incomplete output never looks complete (file and folder mode).

SIGTERM/Ctrl-C (exit 130) and a truncated input (exit 4) leave ``NAME.partial.EXT`` and
never the final name; the report is still written, with what was written and lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mediautil import decode, sha256
from pipeutil import make_clip

from streamanon.cli import main
from streamanon.errors import DecodeError
from streamanon.io import temp_path_for

FRAMES = 1500
HUNGRY = "videos/intel_asl_gestures/hungry.mkv"  # 49 frames, 640x480


def _cut(data_dir: Path, dst: Path, size: int = 70_000) -> Path:
    """The first ``size`` bytes of a shared clip (the input itself is never touched)."""
    dst.write_bytes((data_dir / HUNGRY).read_bytes()[:size])
    return dst


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_leaves_a_partial_file_and_a_report(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", width=320, height=240, frames=FRAMES, rate=25, audio=True)
    out, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamanon", str(clip), "-o", str(out), "-q", "--report", str(rep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (temp_path_for(out).exists() and temp_path_for(out).stat().st_size > 20_000):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no output in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err_b = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err_b.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    partial = tmp_path / "out.partial.mp4"
    assert not out.exists() and not temp_path_for(out).exists()
    assert partial.is_file() and str(partial) in err
    frames, _, _ = decode(partial)
    s = json.loads(rep.read_text())["summary"]
    assert s["interrupted"] is True and s["partial"] is True and s["output"] == str(partial)
    assert s["frames_written"] == len(frames) and 0 < len(frames) < FRAMES
    assert s["frames_lost"] == FRAMES - s["frames"] > 0
    assert s["error"] == "interrupted"


def test_truncated_input_leaves_a_partial_file_and_the_error_counts_lost_frames(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = _cut(data_dir, tmp_path / "cut.mkv")
    before = sha256(cut)
    out, rep = tmp_path / "out.mkv", tmp_path / "r.json"
    (tmp_path / "out.partial.mkv").write_bytes(b"left by an earlier run")
    code = main([str(cut), "-o", str(out), "-q", "--report", str(rep)])
    err = capsys.readouterr().err
    assert code == DecodeError.exit_code, err
    assert not out.exists(), "a truncated input's output never takes the final name"
    partial = tmp_path / "out.partial.mkv"
    frames, _, _ = decode(partial)
    s = json.loads(rep.read_text())["summary"]
    assert s["partial"] is True and s["interrupted"] is False and s["output"] == str(partial)
    assert s["frames_written"] == len(frames) > 0 and s["frames_lost"] > 0
    assert s["error"] is not None and f"{s['frames_lost']} of {s['expected_frames']} frames lost" in s["error"]
    assert str(partial) in err and sha256(cut) == before


def test_folder_run_partial_files_totals_skipped_and_the_file_layout(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp, out, rep = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    inp.mkdir()
    make_clip(inp / "good.mp4", frames=8)
    _cut(data_dir, inp / "cut.mkv")
    (inp / "notes.txt").write_text("not media")
    (inp / ".hidden.mp4").write_bytes(b"")
    code = main([str(inp), "-o", str(out), "--report", str(rep), "-v"])
    err = capsys.readouterr().err
    assert code == DecodeError.exit_code, err
    assert (out / "good.mp4").is_file() and (out / "cut.partial.mkv").is_file() and not (out / "cut.mkv").exists()
    assert "2 files: 1 done, 1 failed" in err and "2 other files skipped" in err
    assert "notes.txt" in err  # -v names the skipped files
    doc = json.loads(rep.read_text())
    single = tmp_path / "single.json"
    assert main([str(inp / "good.mp4"), "-o", str(tmp_path / "g.mp4"), "-q", "--report", str(single)]) == 0
    file_layout = json.loads(single.read_text())
    for entry in doc["files"]:
        assert entry.keys() == file_layout.keys()
        assert entry["summary"].keys() == file_layout["summary"].keys()
    t = doc["totals"]
    assert (t["files"], t["files_done"], t["files_failed"], t["files_skipped"]) == (2, 1, 1, 2)
    assert sorted(Path(p).name for p in t["skipped"]) == [".hidden.mp4", "notes.txt"]
    assert t["frames"] == sum(e["summary"]["frames"] for e in doc["files"])
    # one stats layout: a file's, the folder's totals (the files' summed)
    assert t["stats"].keys() == file_layout["summary"]["stats"].keys()
    for key in ("frames", "frames_written", "faces", "tracks", "detections"):
        assert t["stats"][key] == t[key] == sum(e["summary"]["stats"][key] for e in doc["files"]), key
    assert t["frames_lost"] > 0


def test_partial_name_that_is_the_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "a.partial.mp4", frames=3)
    before = sha256(src)
    code = main([str(src), "-o", str(tmp_path / "a.mp4"), "-q"])
    err = capsys.readouterr().err
    assert code == 5 and "the input" in err, err
    assert sha256(src) == before and not (tmp_path / "a.mp4").exists()
