"""Issue 24: the default CPU path (OpenVINO, solid) loads no runtime it does not use.

Each module left out is peak RSS saved (benchmarks/bench_memory.py --phases): onnx ~15 MiB
(CenterFace's preparation hook, which OpenVINO does not need), onnxruntime ~20 MiB (asked
for GPU providers that a CPU-only build cannot have), scipy.optimize ~40 MiB (the tracker's
assignment, now ``lap``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamanon.backends import onnxruntime as ortb
from streamanon.backends import openvino as ovb
from streamanon.backends.loader import onnx_model, open_backend
from streamanon.backends.select import EngineChoice
from streamanon.config import EngineConfig

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("onnx", "onnxruntime", "scipy", "scipy.optimize", "torch", "dlib")
# the methods that load models, and the live endpoints: imported when used (~3 MiB, ~30 ms)
LAZY = (
    "streamanon.anonymize.surrogate",
    "streamanon.anonymize.generate",
    "streamanon.anonymize.adversarial",
    "streamanon.anonymize.ksame",
    "streamanon.live",
    "http.server",
)


@pytest.mark.skipif(not ovb.openvino_available(), reason="OpenVINO not installed")
def test_a_solid_run_on_openvino_imports_no_unused_runtime(data_dir: Path, tmp_path: Path) -> None:
    """A photo and a clip with faces (the tracker assigns) through the CLI, in a fresh interpreter."""
    clip = REPO / "streamanon" / "assets" / "astronaut.jpg"
    out = tmp_path / "out.jpg"
    code = (
        "import sys, json\n"
        "from streamanon.cli import main\n"
        "rc = main([sys.argv[1], '-o', sys.argv[2], '-q', *sys.argv[3:]])\n"
        f"print(json.dumps([rc, [m for m in {HEAVY + LAZY!r} if m in sys.modules]]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-c", code, str(clip), str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    rc, loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert rc == 0, res.stderr
    assert loaded == [], f"imported on the OpenVINO solid path: {loaded}"
    # and the video path, where the tracker assigns boxes frame to frame
    video = data_dir / "videos" / "face_recognition__short_hamilton_clip.mp4"
    res = subprocess.run(
        [sys.executable, "-c", code, str(video), str(tmp_path / "out.mp4"), "--duration", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    rc, loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert rc == 0, res.stderr
    assert loaded == [], f"imported on the OpenVINO solid path: {loaded}"


@pytest.mark.skipif(not ovb.openvino_available(), reason="OpenVINO not installed")
def test_openvino_runs_the_shipped_centerface_as_the_prepared_one() -> None:
    """``prepare_skip``: OpenVINO frees the input's axes itself; outputs equal the prepared model's."""
    model = onnx_model("centerface")
    assert model.skips_prepare("openvino") and not model.skips_prepare("onnxruntime")
    choice = EngineChoice(EngineConfig(backend="openvino", precision="fp32"), True, "test")
    shipped = open_backend(model, choice)
    prepared = ovb.OpenVinoBackend(model.data, "fp32", label="prepared")
    assert (
        [s.shape for s in shipped.input_spec()] == [s.shape for s in prepared.input_spec()] == [(None, 3, None, None)]
    )
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 96, 160), (2, 3, 64, 64)]:
        x = {"input.1": (rng.random(shape) * 255).astype(np.float32)}
        a, b = shipped.infer(x), prepared.infer(x)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_cpu_only_build_is_read_from_the_package_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.machinery

    capi = tmp_path / "onnxruntime" / "capi"
    capi.mkdir(parents=True)

    def spec(name: str) -> importlib.machinery.ModuleSpec:
        s = importlib.machinery.ModuleSpec(name, None, is_package=True)
        s.submodule_search_locations = [str(tmp_path / "onnxruntime")]
        return s

    monkeypatch.setattr(ortb.importlib.util, "find_spec", spec)
    assert ortb.cpu_only_build() is False  # nothing there: ask ONNX Runtime
    (capi / "onnxruntime_pybind11_state.so").touch()
    (capi / "libonnxruntime_providers_shared.so").touch()
    assert ortb.cpu_only_build() is True
    (capi / "libonnxruntime_providers_cuda.so").touch()
    assert ortb.cpu_only_build() is False  # onnxruntime-gpu
    (capi / "libonnxruntime_providers_cuda.so").unlink()
    (capi / "DirectML.dll").touch()
    assert ortb.cpu_only_build() is False  # onnxruntime-directml


@pytest.mark.skipif(not ovb.openvino_available(), reason="OpenVINO not installed")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_uint8_images_give_the_float_inputs_outputs(precision: str) -> None:
    """``take_uint8_images``: a frame fed as decoded (uint8 NHWC) gives the outputs of its float NCHW copy."""
    if precision == "bf16" and not ovb.native_bf16():
        pytest.skip("no native bf16 on this CPU")
    model = onnx_model("centerface")
    choice = EngineChoice(EngineConfig(backend="openvino", precision=precision), True, "test")
    floats, images = open_backend(model, choice), open_backend(model, choice)
    assert isinstance(images, ovb.OpenVinoBackend)
    assert images.take_uint8_images("input.1") and images.take_uint8_images("input.1")  # again: no-op
    assert not images.take_uint8_images("no-such-input")
    assert [(s.shape, s.dtype) for s in images.input_spec()] == [((None, None, None, 3), "uint8")]
    rng = np.random.default_rng(1)
    for shape in [(1, 96, 160, 3), (2, 64, 64, 3)]:
        u8 = rng.integers(0, 256, shape, dtype=np.uint8)
        a = floats.infer({"input.1": u8.transpose(0, 3, 1, 2).astype(np.float32)})
        b = images.infer({"input.1": u8})
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.skipif(not ovb.openvino_available(), reason="OpenVINO not installed")
def test_detector_on_uint8_input_finds_what_the_float_path_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector feeds OpenVINO its frames as they are (resized into per-thread buffers
    that are reused call to call); boxes and scores equal the float path's, frame sizes mixed."""
    import cv2

    from streamanon.config import DetectConfig
    from streamanon.detect import centerface as cf

    photo = cv2.cvtColor(cv2.imread(str(REPO / "streamanon" / "assets" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    config = DetectConfig(backend="openvino", precision="fp32")
    u8 = cf.CenterFaceDetector(config)
    monkeypatch.setattr(cf, "take_uint8_images", lambda backend, name: False)
    f32 = cf.CenterFaceDetector(config)
    assert u8._uint8_input and not f32._uint8_input
    frames = [photo, cv2.resize(photo, (300, 200)), photo[:, ::-1].copy(), cv2.resize(photo, (300, 200))[::-1].copy()]
    found = 0
    for batch in ([frames[0]], [frames[1]], [frames[2]], [frames[1], frames[3]]):
        for a, b in zip(u8(batch), f32(batch), strict=True):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.score, b.score)
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
            found += len(a)
    assert found >= 4  # the astronaut's face in every frame
