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


@pytest.mark.skipif(not ovb.openvino_available(), reason="OpenVINO not installed")
def test_a_solid_run_on_openvino_imports_no_unused_runtime(data_dir: Path, tmp_path: Path) -> None:
    """A photo and a clip with faces (the tracker assigns) through the CLI, in a fresh interpreter."""
    clip = REPO / "streamanon" / "assets" / "astronaut.jpg"
    out = tmp_path / "out.jpg"
    code = (
        "import sys, json\n"
        "from streamanon.cli import main\n"
        "rc = main([sys.argv[1], '-o', sys.argv[2], '-q', *sys.argv[3:]])\n"
        f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
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
