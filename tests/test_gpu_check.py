"""benchmarks/gpu_check: its dry run passes here (CI runs it through this test) and its
comparison of a GPU run against the CPU reference fails on a box mismatch or a leak."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streamanon.types import Detections

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", REPO / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def dets(*rows: tuple[float, float, float, float, float]) -> Detections:
    a = np.asarray(rows, np.float32).reshape(-1, 5)
    return Detections(a[:, :4], a[:, 4])


def recorded(gc: ModuleType, raw: dict[int, Detections], masked: dict[int, Detections] | None = None) -> object:
    rec = gc.Recorded(raw=dict(raw), masked=dict(raw if masked is None else masked), size=(320, 240))
    rec.frames = len(raw)
    return rec


FACE = (100.0, 60.0, 140.0, 110.0, 0.9)


def test_identical_runs_pass(gc: ModuleType) -> None:
    cfg = gc.cpu_config()
    ref = recorded(gc, {0: dets(FACE), 1: dets()})
    cmp = gc.compare(ref, recorded(gc, {0: dets(FACE), 1: dets()}), cfg)
    assert cmp.ok, cmp.summary()
    assert gc.verdict([gc.Row("file", result=cmp.summary(), ok=cmp.ok)]) == 0


def test_box_mismatch_fails(gc: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = gc.cpu_config()
    ref = recorded(gc, {0: dets(FACE)})
    moved = dets((200.0, 60.0, 240.0, 110.0, 0.9))  # same size, elsewhere: IoU 0
    cand = recorded(gc, {0: moved}, {0: dets(FACE, (*moved.xyxy[0].tolist(), 0.9))})  # masked both: no leak
    cmp = gc.compare(ref, cand, cfg)
    assert not cmp.ok
    assert (cmp.missing, cmp.extra, cmp.leaks) == (1, 1, 0)
    assert cmp.mismatched_frames == [0]
    assert gc.verdict([gc.Row("file-1080p", result=cmp.summary(), ok=cmp.ok)]) == 1
    assert "file-1080p" in capsys.readouterr().err


def test_leak_fails(gc: ModuleType) -> None:
    """The GPU detector found the face but the frame went out with it unmasked."""
    cfg = gc.cpu_config()
    cmp = gc.compare(recorded(gc, {0: dets(FACE)}), recorded(gc, {0: dets(FACE)}, {0: dets()}), cfg)
    assert (cmp.missing, cmp.extra, cmp.leaks, cmp.leaked_frames) == (0, 0, 1, [0])
    assert not cmp.ok and "LEAKS" in cmp.summary()


def test_scores_near_threshold_may_differ(gc: ModuleType) -> None:
    """FP16 vs FP32: a face scoring within the band around the threshold on one side only."""
    cfg = gc.cpu_config()
    thr = cfg.detect.threshold
    weak = (10.0, 10.0, 40.0, 50.0, thr + 0.05)
    cmp = gc.compare(recorded(gc, {0: dets(FACE, weak)}), recorded(gc, {0: dets(FACE)}), cfg)
    assert cmp.ok, cmp.summary()
    assert cmp.borderline == 1 and "1 borderline" in cmp.summary()
    strong = (10.0, 10.0, 40.0, 50.0, thr + 0.3)
    cmp = gc.compare(recorded(gc, {0: dets(FACE, strong)}), recorded(gc, {0: dets(FACE)}), cfg)
    assert cmp.missing == 1 and not cmp.ok


def test_missing_frames_and_gpu_path_not_taken_fail(gc: ModuleType) -> None:
    cfg = gc.cpu_config()
    ref = recorded(gc, {0: dets(FACE), 1: dets(FACE)})
    short = recorded(gc, {0: dets(FACE)})
    assert gc.compare(ref, short, cfg).frame_count_differs
    cand = recorded(gc, {0: dets(FACE), 1: dets(FACE)})
    cand.video = {"decode": {"device": "none"}, "encode": {"codec": "libx264"}}
    cand.inference = {"backend": "onnxruntime"}
    row = gc.file_row("file-1080p", cand, ref, cfg, need_gpu_video=True)
    assert not row.ok and "GPU path not taken" in row.result


def test_dry_run(data_dir: Path) -> None:
    """The whole dry run, as CI runs it: plan, scripts, clips, engine commands, extras,
    streams file, RTSP server and the CPU reference with the comparison on a few frames."""
    env = dict(os.environ, STREAMANON_DATA=str(data_dir), PYTHONPATH=str(REPO))
    r = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "gpu_check plan:" in r.stdout and "all checks passed" in r.stdout
    for step in ("parse", "extras", "clips", "engines", "streams", "cpu-ref+compare"):
        assert any(line.startswith(step) and "FAILED" not in line for line in r.stdout.splitlines()), step


def _fake_gpu(gc: ModuleType, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, str, str]]) -> None:
    """A machine whose GPU runs take no time: every run records one face on every frame,
    on the GPU path; the generate step's prefix clip has 4 frames, the full clips 10."""

    def run_file(clip: Path, out: Path, config: object) -> object:
        calls.append((clip.name, config.detect.backend, config.anonymize.method))  # type: ignore[attr-defined]
        n = 4 if clip.name == "prefix.mp4" else 10
        rec = recorded(gc, {i: dets(FACE) for i in range(n)})
        rec.video = {"decode": {"device": "cuda"}, "encode": {"codec": "h264_nvenc"}}  # type: ignore[attr-defined]
        rec.inference = {"backend": "tensorrt"}  # type: ignore[attr-defined]
        rec.anonymizer = {"generator_backend": "tensorrt"}  # type: ignore[attr-defined]
        return rec

    monkeypatch.setattr(gc, "gpu_name", lambda: "Fake GPU")
    monkeypatch.setattr(gc, "make_clip", lambda dst, size, frames: dst)
    monkeypatch.setattr(gc, "engine_commands", lambda engine_dir: {})
    monkeypatch.setattr(gc.common, "prefix_clip", lambda clip, n, workdir: workdir / "prefix.mp4")
    monkeypatch.setattr(gc, "run_file", run_file)


def test_the_cpu_reference_runs_once_per_clip(gc: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []
    _fake_gpu(gc, monkeypatch, calls)
    monkeypatch.setattr(
        gc,
        "run_streams",
        lambda *a: {"feeds_writing": 8, "exit": 0, "latency_ms": [], "fps": 1.0, "drop_rate": 0.0, "stderr": ""},
    )
    ns = gc.argparse.Namespace(frames=10, frames_4k=10, frames_generate=4, feeds=8, seconds=1.0, engine_dir=tmp_path)
    rows = gc.full_run(ns, tmp_path)
    cpu = [c for c in calls if c[1] == "onnxruntime"]
    assert sorted(c[0] for c in cpu) == ["1080p.mp4", "4k.mp4"]  # the generate step reuses the 1080p reference
    gen = next(r for r in rows if r.step == "generate-1080p")
    assert gen.ok, gen.result  # against the reference's first 4 frames: same frame count, same faces
    assert [r.step for r in rows if not r.ok] == []


def test_a_failing_step_is_one_line_and_exit_1(
    gc: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, str, str]] = []
    _fake_gpu(gc, monkeypatch, calls)

    def broken(*args: object) -> object:
        raise RuntimeError("no frame decoded from openpose__video.avi")

    monkeypatch.setattr(gc, "make_clip", broken)
    assert gc.main(["--keep", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "FAILED: RuntimeError: no frame decoded" in out.out and "gpu_check: FAILED: clips" in out.err
