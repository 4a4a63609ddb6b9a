"""Backend and precision selection, the OpenVINO backend against ONNX Runtime, and the
score margin of reduced precision, on real frames of the shared clips."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mediautil import DATA, decode

from streamanon.backends import openvino as ovb
from streamanon.backends import select, tensorrt
from streamanon.backends.select import choose_backend
from streamanon.config import DetectConfig, PipelineConfig
from streamanon.detect.centerface import CenterFaceDetector, network_size, prepare_model
from streamanon.errors import ConfigError, EngineNotFoundError, MissingDependencyError
from streamanon.pipeline import Stages
from streamanon.track.association import box_iou

HAS_OV = ovb.openvino_available()
NATIVE_BF16 = HAS_OV and ovb.native_bf16()
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino is not installed")
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16 (AVX512-BF16/AMX)")
CLIP = DATA / "videos" / "face_recognition__short_hamilton_clip.mp4"


def choose(**kw: object) -> select.BackendChoice:
    return choose_backend(DetectConfig(**kw), lambda: "0" * 64)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    if not CLIP.is_file():
        pytest.skip(f"shared clip missing: {CLIP}")
    images: list[np.ndarray] = decode(CLIP, limit=120)[0]
    return images[::4]


# -- selection -------------------------------------------------------------------------
def test_named_backends_and_precisions() -> None:
    ort = choose(backend="onnxruntime")
    assert (ort.config.backend, ort.config.precision, ort.on_cpu, ort.score_margin) == (
        "onnxruntime",
        "fp32",
        True,
        1.0,
    )
    with pytest.raises(ConfigError, match="ONNX Runtime runs the model in fp32"):
        choose(backend="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="TensorRT engines are built in fp16 or fp32"):
        choose(backend="tensorrt", precision="bf16")
    gpu = choose(backend="onnxruntime", providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert not gpu.on_cpu  # decided without creating a session


@needs_ov
def test_openvino_precisions() -> None:
    with pytest.raises(ConfigError, match="OpenVINO runs bf16 or fp32"):
        choose(backend="openvino", precision="fp16")
    assert choose(backend="openvino", precision="fp32").config.precision == "fp32"
    auto = choose(backend="openvino")
    assert auto.config.precision == ("bf16" if NATIVE_BF16 else "fp32")
    assert auto.score_margin == (select.SCORE_MARGIN["bf16"] if NATIVE_BF16 else 1.0)


def test_bf16_without_native_support_is_refused_or_avoided(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovb, "openvino_available", lambda: True)
    monkeypatch.setattr(ovb, "native_bf16", lambda core=None: False)
    with pytest.raises(ConfigError, match="native bfloat16"):
        choose(backend="openvino", precision="bf16")
    assert choose().config.precision == "fp32"  # auto never picks emulated bf16


def test_auto_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No TensorRT here: the reason names it, and the CPU backend is OpenVINO when installed.
    auto = choose(engine_dir=str(tmp_path))
    assert "TensorRT not used" in auto.reason and auto.on_cpu
    assert auto.config.backend == ("openvino" if HAS_OV else "onnxruntime")
    # Without OpenVINO: ONNX Runtime on the CPU; bf16 then cannot be had at all.
    monkeypatch.setattr(ovb, "openvino_available", lambda: False)
    assert choose().config.backend == "onnxruntime"
    with pytest.raises(MissingDependencyError, match=r"streamanon\[openvino\]"):
        choose(precision="bf16")
    with pytest.raises(MissingDependencyError, match=r"streamanon\[openvino\]"):
        choose(backend="openvino")
    # A GPU provider (installed, or named) goes before the CPU backends.
    monkeypatch.setattr(select, "_gpu_providers", lambda: ["CUDAExecutionProvider"])
    gpu = choose()
    assert (gpu.config.backend, gpu.config.providers, gpu.on_cpu) == ("onnxruntime", ("auto",), False)
    # A usable TensorRT engine goes first, in fp16 unless asked otherwise; bf16 skips it.
    monkeypatch.setattr(tensorrt, "usable_engine", lambda *a: (tmp_path / "x.engine", None))
    assert (choose().config.backend, choose().config.precision, choose().on_cpu) == ("tensorrt", "fp16", False)
    assert choose(precision="fp32").config.precision == "fp32"
    monkeypatch.setattr(ovb, "openvino_available", lambda: True)
    monkeypatch.setattr(ovb, "native_bf16", lambda core=None: True)
    assert choose(precision="bf16").config.backend == "openvino"


def test_auto_fp16_without_tensorrt_falls_back_to_fp32_not_lower(tmp_path: Path) -> None:
    with pytest.raises((MissingDependencyError, EngineNotFoundError)):  # no TensorRT, or no engine
        tensorrt.usable_engine(tmp_path, "centerface", "0" * 64, "fp16")
    fallback = choose(precision="fp16", engine_dir=str(tmp_path))
    assert fallback.config.precision == "fp32" and fallback.score_margin == 1.0


def test_stages_workers_threshold_and_report() -> None:
    stages = Stages(PipelineConfig())
    choice = choose()
    inf = stages.inference
    assert (inf["backend"], inf["precision"], inf["device"]) == (choice.config.backend, choice.config.precision, "cpu")
    assert stages.detect_workers == Stages.auto_workers(choice)
    # the detector keeps scores down to its margin, and the tracker thresholds follow it
    margin = choice.score_margin
    det = stages.detector
    assert isinstance(det, CenterFaceDetector) and det.score_margin == margin == inf["score_margin"]
    assert det.config.threshold == 0.2 and det.low_threshold == pytest.approx(0.1)
    tracker = stages.new_tracker()
    assert tracker.threshold == pytest.approx(0.2 * margin)
    assert tracker.config.low_threshold == pytest.approx(0.1 * margin)
    # a detector handed in (one per eval run, reused) carries its margin to new stages
    again = Stages(PipelineConfig(), detector=det)
    assert again.new_tracker().threshold == pytest.approx(0.2 * margin)
    fp32 = Stages(replace(PipelineConfig(), detect=DetectConfig(backend="onnxruntime")))
    assert fp32.new_tracker().threshold == 0.2 and fp32.inference["workers"] == fp32.detect_workers


def test_auto_workers_follow_the_device() -> None:
    cpu = choose(backend="onnxruntime")
    assert [Stages.auto_workers(cpu, n) for n in (1, 2, 8)] == [1, 2, 2]
    gpu = choose(backend="onnxruntime", providers=("CUDAExecutionProvider",))
    assert Stages.auto_workers(gpu, 8) == 1


# -- the OpenVINO backend --------------------------------------------------------------
@needs_ov
def test_openvino_fp32_matches_onnxruntime(frames: list[np.ndarray]) -> None:
    from streamanon.backends.onnxruntime import OrtBackend

    h0, w0 = frames[0].shape[:2]
    w, h = network_size(w0, h0, None)
    import cv2

    blob = cv2.resize(frames[0], (w, h)).transpose(2, 0, 1)[None].astype(np.float32)
    ort = OrtBackend(prepare_model(), ["CPUExecutionProvider"], 1).infer({"input.1": blob})
    ov = ovb.OpenVinoBackend(prepare_model(), "fp32", threads=1).infer({"input.1": blob})
    assert list(ort) == list(ov) == ["537", "538", "539", "540"]
    for name, a in ort.items():
        np.testing.assert_allclose(a, ov[name], atol=1e-3)


@needs_ov
def test_openvino_concurrent_calls_match_sequential(frames: list[np.ndarray]) -> None:
    backend = ovb.OpenVinoBackend(prepare_model(), "fp32", threads=1, callers=2)
    det = CenterFaceDetector(DetectConfig(backend="openvino", precision="fp32"), backend=backend)
    sequential = [det([im])[0] for im in frames[:8]]
    out: dict[int, object] = {}

    def work(i: int) -> None:
        out[i] = det([frames[i]])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, ref in enumerate(sequential):
        np.testing.assert_array_equal(out[i].xyxy, ref.xyxy)  # type: ignore[attr-defined]


@needs_bf16
def test_bf16_with_its_margin_finds_what_fp32_finds(frames: list[np.ndarray]) -> None:
    """On real frames: without the margin bf16 loses near-threshold faces; with it, the
    bf16 boxes contain fp32's (IoU >= 0.5) and the box geometry agrees."""
    fp32 = CenterFaceDetector(DetectConfig(backend="onnxruntime", threads=1))
    bf16 = CenterFaceDetector(DetectConfig(backend="openvino", precision="bf16", threads=1))
    assert bf16.score_margin == select.SCORE_MARGIN["bf16"] < 1.0  # keeps scores down to 0.2 * margin
    found = matched = lost_without_margin = 0
    for im in frames:
        a, b = fp32([im])[0], bf16([im])[0]
        found += len(a)
        if not len(a):
            continue
        assert len(b), "bf16 found nothing where fp32 found faces"
        iou = box_iou(a.xyxy, b.xyxy)
        best = iou.argmax(axis=1)
        hit = iou.max(axis=1) >= 0.5
        matched += int(hit.sum())
        lost_without_margin += int((hit & (b.score[best] < 0.2)).sum())
    assert found > 50
    assert matched / found >= 0.99, (matched, found)
    assert lost_without_margin > 0, "the margin should matter on this clip (near-threshold faces)"


def test_cli_refuses_a_precision_the_backend_cannot_run(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(src), np.zeros((32, 32, 3), np.uint8))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamanon",
            str(src),
            "-o",
            str(tmp_path / "o.png"),
            "--backend",
            "onnxruntime",
            "--precision",
            "bf16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ConfigError.exit_code, proc.stderr
    assert "fp32" in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_report_and_doctor_name_the_backend(tmp_path: Path) -> None:
    src, report = tmp_path / "in.png", tmp_path / "r.json"
    import cv2

    cv2.imwrite(str(src), np.zeros((32, 32, 3), np.uint8))
    run = subprocess.run(
        [sys.executable, "-m", "streamanon", str(src), "-o", str(tmp_path / "o.png"), "--report", str(report), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    inference = json.loads(report.read_text())["summary"]["inference"]
    choice = choose()
    assert (inference["backend"], inference["precision"]) == (choice.config.backend, choice.config.precision)
    doctor = subprocess.run([sys.executable, "-m", "streamanon", "doctor"], capture_output=True, text=True, timeout=120)
    assert "OpenVINO:" in doctor.stdout
    assert f"default backend: {choice.config.backend} {choice.config.precision} on the CPU" in doctor.stdout
