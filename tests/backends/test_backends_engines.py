"""CPU-side logic of the GPU path: export, naming, manifests, selection and errors.

The TensorRT build and inference themselves need an NVIDIA GPU and are skipped here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamanon.backends.manifest import EngineManifest, check_manifest, find_engine, write_engine
from streamanon.backends.onnxruntime import OrtBackend
from streamanon.backends.tensorrt import tensorrt_status
from streamanon.config import DetectConfig
from streamanon.detect.centerface import CenterFaceDetector, load_backend, prepare_model
from streamanon.errors import EngineIncompatibleError, EngineNotFoundError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[2]
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def manifest(**kw: object) -> EngineManifest:
    base: dict[str, object] = dict(
        model="centerface",
        precision="fp16",
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        compute_capability="9.0",
        input_name="input.1",
        profile_min=(1, 3, 32, 32),
        profile_opt=(4, 3, 384, 640),
        profile_max=(16, 3, 1088, 1920),
    )
    base.update(kw)
    return EngineManifest(**base)  # type: ignore[arg-type]


def test_engine_name_says_what_invalidates_it() -> None:
    assert manifest().file_name() == "centerface-fp16-b1x4x16-sm90-trt10.3.engine"


def test_write_find_and_check(tmp_path: Path) -> None:
    m = manifest()
    path = write_engine(tmp_path, m, b"engine-bytes")
    assert path.read_bytes() == b"engine-bytes"
    found, m2 = find_engine(tmp_path, "centerface", "fp16")
    assert found == path and m2 == m
    check_manifest(m2, onnx_sha256="a" * 64, tensorrt_version="10.3.1", compute_capability="9.0", engine_dir=tmp_path)
    with pytest.raises(
        EngineIncompatibleError,
        match=r"sm9.0, this GPU is sm8.6.*rebuild with: python build_engines.py --model centerface",
    ):
        check_manifest(
            m2, onnx_sha256="a" * 64, tensorrt_version="10.3.0", compute_capability="8.6", engine_dir=tmp_path
        )
    with pytest.raises(EngineIncompatibleError, match=r"ONNX model changed.*TensorRT 10\.3\.0, running 8\.6"):
        check_manifest(
            m2, onnx_sha256="b" * 64, tensorrt_version="8.6.1", compute_capability="9.0", engine_dir=tmp_path
        )


def test_engine_without_manifest_is_not_used(tmp_path: Path) -> None:
    (tmp_path / manifest().file_name()).write_bytes(b"half-written")
    with pytest.raises(EngineNotFoundError, match=r"build one with: python build_engines\.py"):
        find_engine(tmp_path, "centerface", "fp16")


def test_export_only_writes_the_prepared_dynamic_onnx_that_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build_engines.py"), "--export-only", "--engine-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    onnx = tmp_path / "centerface.export.onnx"
    assert onnx.read_bytes() == prepare_model()  # the registry's hook applied
    assert "profile input.1: min [1, 3, 32, 32] opt [4, 3, 384, 640] max [16, 3, 1088, 1920]" in proc.stderr
    be = OrtBackend(str(onnx))
    (spec,) = be.input_spec()
    assert spec.name == "input.1" and spec.shape == ("B", 3, "H", "W") and spec.dtype == "float32"
    for b, h, w in ((1, 64, 96), (3, 128, 64)):
        outs = be.infer({"input.1": np.zeros((b, 3, h, w), np.float32)})
        assert outs["537"].shape == (b, 1, h // 4, w // 4)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_tensorrt_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"streamanon\[tensorrt\]"):
        load_backend(DetectConfig(backend="tensorrt", engine_dir=str(tmp_path)))
    assert "not installed" in tensorrt_status()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build_engines.py"), "--engine-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == MissingDependencyError.exit_code
    assert "streamanon[tensorrt]" in proc.stderr and "Traceback" not in proc.stderr


def test_auto_falls_back_to_a_cpu_backend_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from streamanon.backends.openvino import OpenVinoBackend, openvino_available

    caplog.set_level("INFO")
    det = CenterFaceDetector(DetectConfig(backend="auto", engine_dir=str(tmp_path)))
    assert isinstance(det.backend, OpenVinoBackend if openvino_available() else OrtBackend)
    assert "TensorRT not used" in caplog.text and "on the CPU" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU (not available on CPU-only CI)")
def test_tensorrt_engine_matches_onnxruntime(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    sys.path.insert(0, str(ROOT))
    import build_engines

    build_engines.build("centerface", "fp32", tmp_path)
    img = np.random.default_rng(0).integers(0, 255, (2, 360, 640, 3), np.uint8)
    trt_det = CenterFaceDetector(DetectConfig(backend="tensorrt", engine_dir=str(tmp_path), precision="fp32"))
    ort_det = CenterFaceDetector(DetectConfig(backend="onnxruntime"))
    for a, b in zip(trt_det(list(img)), ort_det(list(img)), strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
    json.loads(next(tmp_path.glob("*.engine.json")).read_text())
