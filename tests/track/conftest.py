"""Builders shared by the tracking tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from streamanon.types import Detections


def _make_dets(boxes: Sequence[Sequence[float]] = (), scores: Sequence[float] | None = None) -> Detections:
    """``Detections`` from xyxy boxes; scores default to 0.9."""
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    score = np.full(len(xyxy), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(xyxy, score)


@pytest.fixture
def make_dets() -> Callable[..., Detections]:
    """Builder: ``make_dets([[x0, y0, x1, y1], ...], scores=[...])``."""
    return _make_dets
