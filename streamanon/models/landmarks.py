"""dlib's shape predictors (5 and 68 points) on given face boxes, from the model registry."""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from ..backends.registry import resolve_model
from ..errors import MissingDependencyError, ModelError
from .store import shared


class DlibLandmarker:
    """A dlib shape predictor from ``face_recognition_models`` (registry ``model``) on given boxes.

    dlib is an optional extra (``pip install 'streamanon[align]'``); a missing package or
    model file is a clear error at construction. One predictor is shared by every run
    of a process; calls are serialised (dlib's predictor is not documented as
    thread-safe).
    """

    model = ""
    points = 0

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise MissingDependencyError.for_extra("dlib", "align") from exc
        path = resolve_model(self.model)
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise ModelError(f"cannot load the {self.points}-point landmark model {path}: {exc}") from exc
        self._dlib = dlib
        self._lock = threading.Lock()

    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(N, points, 2)`` float32 landmarks for ``boxes`` (x0, y0, x1, y1); NaN for degenerate boxes."""
        out = np.full((len(boxes), self.points, 2), np.nan, np.float32)
        if not len(boxes):
            return out
        img = np.ascontiguousarray(image)
        with self._lock:
            for i, b in enumerate(boxes):
                x0, y0, x1, y1 = (round(float(v)) for v in b)
                if x1 - x0 < 2 or y1 - y0 < 2:
                    continue
                shape = self._predictor(img, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
                out[i] = [(shape.part(j).x, shape.part(j).y) for j in range(self.points)]
        return out


class Landmarker68(DlibLandmarker):
    """dlib's 68-point shape predictor (iBUG 300-W layout), ~1 ms a face."""

    model = "dlib-shape-68"
    points = 68


class Landmarker5(DlibLandmarker):
    """dlib's 5-point shape predictor (eye corners, nose): the points dlib's chip geometry
    is defined on (CenterFace's five points are not those), ~0.2 ms a face."""

    model = "dlib-shape-5"
    points = 5


def landmarker68() -> Landmarker68:
    """The process's 68-point predictor (loaded once, ``models.store``)."""
    return shared(Landmarker68.model, (), Landmarker68)


def landmarker5() -> Landmarker5:
    """The process's 5-point predictor (loaded once, ``models.store``)."""
    return shared(Landmarker5.model, (), Landmarker5)
