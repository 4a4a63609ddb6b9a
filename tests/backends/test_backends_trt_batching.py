"""TensorRT batches from many feeds: every execution within the engine's profile (CPU side).

The engine's execution (``TensorRTBackend._infer_once``) needs a GPU; here it is replaced
by CenterFace on ONNX Runtime with the engine's batch bound checked on every call, and
everything around it is the real code: the shared detector of ``streamanon streams``,
the CenterFace detector, and ``TensorRTBackend.infer``'s fitting of batches to the profile.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from mediautil import DATA, decode
from numpy.typing import NDArray

from streamanon.backends import loader
from streamanon.backends.base import EngineConfig
from streamanon.backends.manifest import EngineManifest
from streamanon.backends.tensorrt import TensorRTBackend, profile_batch, run_in_batches
from streamanon.config import DetectConfig
from streamanon.detect.centerface import CenterFaceDetector
from streamanon.errors import ModelError
from streamanon.live.shared_detector import BatchingDetector, shared_batch

CLIP = DATA / "videos" / "face_recognition__short_hamilton_clip.mp4"


def _manifest(lo: int, hi: int) -> EngineManifest:
    return EngineManifest(
        model="centerface",
        precision="fp16",
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        compute_capability="9.0",
        input_name="input.1",
        profile_min=(lo, 3, 32, 32),
        profile_opt=(4, 3, 384, 640),
        profile_max=(hi, 3, 1088, 1920),
    )


def test_profile_batch_reads_every_input() -> None:
    assert profile_batch(_manifest(1, 16)) == (1, 16)
    m = EngineManifest.for_profiles(
        [*_manifest(1, 16).profiles(), type(_manifest(1, 1).profiles()[0])("code", (2, 8), (4, 8), (8, 8))],
        model="g",
        precision="fp16",
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        compute_capability="9.0",
    )
    assert profile_batch(m) == (2, 8)


def test_run_in_batches_chunks_and_pads() -> None:
    seen: list[int] = []

    def call(inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        n = inputs["x"].shape[0]
        assert 2 <= n <= 3, n
        seen.append(n)
        return {"y": inputs["x"] * 2, "z": inputs["x"][:, :1] + inputs["w"][:, :1]}

    x = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)
    out = run_in_batches(call, {"x": x, "w": -x}, min_batch=2, max_batch=3)
    assert seen == [3, 3, 2]
    np.testing.assert_array_equal(out["y"], x * 2)
    np.testing.assert_array_equal(out["z"], np.zeros((8, 1), np.float32))
    seen.clear()
    one = run_in_batches(call, {"x": x[:1], "w": x[:1]}, min_batch=2, max_batch=3)  # padded to 2, cut back to 1
    assert seen == [2] and one["y"].shape == (1, 4)
    with pytest.raises(ModelError, match="one batch"):
        run_in_batches(call, {"x": x, "w": x[:2]}, 1, 3)


class _EngineOnOrt(TensorRTBackend):
    """``TensorRTBackend`` whose engine execution is CenterFace on ONNX Runtime (no GPU here)."""

    def __init__(self, max_batch: int) -> None:  # no super().__init__: it needs TensorRT and a GPU
        self._ort, _ = loader.load_backend("centerface", EngineConfig(backend="onnxruntime", threads=1))
        self._input_names = [s.name for s in self._ort.input_spec()]
        self._output_names = [s.name for s in self._ort.output_spec()]
        self._label = "centerface.engine"
        self.min_batch, self.max_batch = profile_batch(_manifest(1, max_batch))
        self.providers, self.threads_per_call = ["TensorRT fp16"], 1
        self.executions: list[int] = []

    def input_spec(self) -> Any:
        return self._ort.input_spec()

    def output_spec(self) -> Any:
        return self._ort.output_spec()

    def _infer_once(self, inputs: Any) -> dict[str, NDArray[Any]]:
        n = next(iter(inputs.values())).shape[0]
        assert self.min_batch <= n <= self.max_batch, f"batch {n} outside the engine's profile"
        self.executions.append(n)
        return self._ort.infer(inputs)

    def close(self) -> None:
        pass


def test_shared_detector_hands_tensorrt_batches_within_its_profile() -> None:
    """Frames of eight feeds queued at once reach the engine in executions of at most its max batch."""
    engine = _EngineOnOrt(max_batch=3)
    det = CenterFaceDetector(DetectConfig(det_size=320), backend=engine)
    if not CLIP.is_file():
        pytest.skip(f"shared clip {CLIP.name} not found (STREAMANON_DATA)")
    frames = decode(CLIP, limit=9)[0]  # 640x360, faces in most frames
    reference = CenterFaceDetector(DetectConfig(det_size=320), backend=engine._ort)(frames)
    assert sum(len(d) for d in reference) >= 5, "the clip's faces are found"

    entered, gate = threading.Event(), threading.Event()

    def gated(images: Any) -> Any:
        entered.set()
        gate.wait(10)
        return det(images)

    shared = BatchingDetector(gated, batch=8, workers=1)
    out: dict[int, Any] = {}

    def feed(i: int) -> None:
        out[i] = shared([frames[i]])

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(9)]
    threads[0].start()
    assert entered.wait(10)  # feed 0's frame is in the detector alone
    for k, t in enumerate(threads[1:], 1):  # feeds 1..8 queue meanwhile
        t.start()
        while shared._q.qsize() < k:
            threading.Event().wait(0.005)
    gate.set()
    for t in threads:
        t.join(30)
    shared.close()
    assert shared.stats()["batch_sizes"] == {"1": 1, "8": 1}  # the shared detector's calls
    assert engine.executions == [1, 3, 3, 2]  # what the engine executed: within its profile
    for i in range(9):
        got, want = out[i][0], reference[i]
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
        np.testing.assert_allclose(got.score, want.score, atol=1e-5)


def test_streams_batch_follows_the_engine_profile() -> None:
    engine = _EngineOnOrt(max_batch=3)
    det = CenterFaceDetector(DetectConfig(det_size=320), backend=engine)
    assert shared_batch(det, 8) == 3
    assert shared_batch(det, 2) == 2
    assert shared_batch(lambda images: [], 8) == 8  # a backend without a profile: as configured
