"""Face recognisers used to *measure* anonymisation: embed aligned faces, compare vectors.

The evaluation harness never trusts the product's own detector to find the faces it
scores: an independent detector (dlib) locates each face in the original, a landmark
model aligns it, and a recogniser turns the aligned face into a vector. Two vectors at a
Euclidean distance below ``threshold`` (0.6 for dlib's ResNet, the value dlib documents
for its model) are "the same person".

Model files come from the ``face_recognition_models`` package, through the model registry
(``backends.registry.resolve_model``: located without importing the package, checked
against their sha256) and are never downloaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..backends.registry import resolve_model
from ..errors import ConfigError, MissingDependencyError, ModelError
from .store import shared

log = logging.getLogger(__name__)

#: dlib's documented same-person distance for ``dlib_face_recognition_resnet_model_v1``.
THRESHOLD = 0.6

#: Registry names (``engines/registry.json``: sha256 and licence) of dlib's model files.
MODELS = {
    "recognition": "dlib-resnet-recognizer",
    "landmarks5": "dlib-shape-5",
    "cnn": "dlib-mmod-detector",
}


@dataclass(frozen=True)
class Face:
    """One face as the recogniser sees it.

    Attributes:
        box: ``(4,)`` float32 ``x0, y0, x1, y1`` in image pixels (the detector's box).
        landmarks: ``(5, 2)`` float32 points of dlib's 5-point model (eye corners, nose).
        score: detector confidence (dlib's HOG/CNN score; 1.0 when unknown).
    """

    box: NDArray[np.float32]
    landmarks: NDArray[np.float32]
    score: float = 1.0

    @property
    def size(self) -> float:
        """Face size in pixels: the square root of the box area."""
        w, h = float(self.box[2] - self.box[0]), float(self.box[3] - self.box[1])
        return float(np.sqrt(max(w, 0.0) * max(h, 0.0)))

    def to_record(self) -> dict[str, Any]:
        """JSON-ready box and score (no pixels)."""
        return {"box": [round(float(v), 1) for v in self.box], "score": round(self.score, 3)}


class Recogniser(Protocol):
    """Find, align and embed faces; distances below ``threshold`` mean "same person"."""

    name: str
    threshold: float

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        """Faces in an RGB image, largest first."""
        ...

    def embed(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.float32]:
        """``(N, D)`` vectors of ``faces`` aligned by their landmarks in ``image``."""
        ...


def distance(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """Euclidean distances between rows of ``a`` (N, D) and ``b`` (M, D) -> (N, M)."""
    a2 = np.atleast_2d(a).astype(np.float64)
    b2 = np.atleast_2d(b).astype(np.float64)
    d: NDArray[np.float64] = np.sqrt(np.maximum(((a2[:, None, :] - b2[None, :, :]) ** 2).sum(-1), 0.0))
    return d.astype(np.float32)


def model_path(kind: str) -> Path:
    """Path of one model file (``recognition``, ``landmarks5`` or ``cnn``), checksum verified.

    Raises:
        ModelError: the file is missing from the installed package or is not the registry's.
    """
    try:
        return resolve_model(MODELS[kind])
    except ModelError as exc:
        if exc.missing_package is not None:
            raise MissingDependencyError.for_extra(exc.missing_package, "eval") from exc
        raise


def import_dlib() -> Any:
    """``import dlib`` or a ``MissingDependencyError`` naming the ``eval`` extra."""
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError.for_extra("dlib", "eval") from exc
    return dlib


class DlibRecogniser:
    """dlib's ResNet face recogniser with its 5-point aligner and a HOG or CNN detector.

    Args:
        detector: ``"hog"`` (``dlib.get_frontal_face_detector``, fast, frontal faces) or
            ``"cnn"`` (MMOD CNN, slower on CPU, finds more poses).
        upsample: times the detector upsamples the image (finds faces down to ~40 px / 2**n).
        max_side: images whose long side is larger are shrunk for detection only
            (boxes are scaled back; landmarks are fitted on the full image).
    """

    name = "dlib"
    threshold = THRESHOLD

    def __init__(self, detector: Literal["hog", "cnn"] = "hog", upsample: int = 1, max_side: int = 1024) -> None:
        if detector not in ("hog", "cnn"):
            raise ConfigError(f"invalid dlib detector {detector!r}: expected 'hog' or 'cnn'")
        if not 0 <= upsample <= 3:
            raise ConfigError(f"invalid upsample={upsample!r}: expected an integer in [0, 3]")
        dlib = import_dlib()
        self._dlib = dlib
        self.detector_kind = detector
        self.upsample = upsample
        self.max_side = max_side
        try:
            self._shape = dlib.shape_predictor(str(model_path("landmarks5")))
            self._net = dlib.face_recognition_model_v1(str(model_path("recognition")))
            if detector == "cnn":
                self._det: Any = dlib.cnn_face_detection_model_v1(str(model_path("cnn")))
            else:
                self._det = dlib.get_frontal_face_detector()
        except RuntimeError as exc:  # dlib raises RuntimeError on unreadable model files
            raise ModelError(f"cannot load dlib's models ({', '.join(MODELS.values())}): {exc}") from exc
        self._lock = threading.RLock()  # one dlib call at a time: the instance is shared (``shared_recogniser``)

    # -- detection -------------------------------------------------------------------
    def _raw_detect(self, image: NDArray[np.uint8]) -> list[tuple[NDArray[np.float32], float]]:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1
            else image
        )
        small = np.ascontiguousarray(small)
        out: list[tuple[NDArray[np.float32], float]] = []
        if self.detector_kind == "cnn":
            for d in self._det(small, self.upsample):
                r = d.rect
                out.append(
                    (
                        np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32) / scale,
                        float(d.confidence),
                    )
                )
        else:
            rects, scores, _ = self._det.run(small, self.upsample, 0.0)
            for r, s in zip(rects, scores, strict=True):
                out.append((np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32) / scale, float(s)))
        return out

    def detect(self, image: NDArray[np.uint8]) -> list[Face]:
        """Faces found by dlib's detector in an RGB image, largest first."""
        image = np.ascontiguousarray(image)
        with self._lock:
            faces = [self.locate(image, box, score) for box, score in self._raw_detect(image)]
        return sorted(faces, key=lambda f: -f.size)

    def locate(self, image: NDArray[np.uint8], box: NDArray[np.float32], score: float = 1.0) -> Face:
        """Fit the 5-point landmarks inside a given box."""
        with self._lock:
            shape = self._shape(np.ascontiguousarray(image), self._rect(box))
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float32)
        return Face(np.asarray(box, np.float32), pts, score)

    # -- embedding -------------------------------------------------------------------
    def _rect(self, box: NDArray[np.float32]) -> Any:
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        return self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)

    def _shape_of(self, face: Face) -> Any:
        dlib = self._dlib
        points = dlib.points()
        for x, y in face.landmarks:
            points.append(dlib.point(round(float(x)), round(float(y))))
        return dlib.full_object_detection(self._rect(face.box), points)

    def embed(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.float32]:
        """128-d vectors of ``faces`` in ``image``, aligned with the faces' own landmarks.

        Passing landmarks found on the ORIGINAL image embeds exactly the same region of
        an anonymised image, so a method cannot "pass" by merely defeating the detector.
        """
        if not faces:
            return np.zeros((0, 128), np.float32)
        shapes = self._dlib.full_object_detections()
        for f in faces:
            shapes.append(self._shape_of(f))
        with self._lock:
            vecs = self._net.compute_face_descriptor(np.ascontiguousarray(image), shapes)
        return np.array([np.array(v, np.float32) for v in vecs], np.float32)


def shared_recogniser(detector: Literal["hog", "cnn"] = "hog", upsample: int = 1) -> DlibRecogniser:
    """The process's ``DlibRecogniser`` with these settings (loaded once, ``models.store``)."""
    return shared("dlib-recogniser", (detector, upsample), lambda: DlibRecogniser(detector, upsample))
