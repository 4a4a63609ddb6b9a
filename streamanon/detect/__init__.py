"""Face detectors behind one protocol and a name registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..config import DetectConfig
from ..errors import ConfigError
from ..types import Detections
from .centerface import CenterFaceDetector


class Detector(Protocol):
    """``images`` (RGB uint8) -> one ``Detections`` per image, in original pixels."""

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]: ...


def _centerface(config: DetectConfig, **kw: Any) -> Detector:
    return CenterFaceDetector(config, **kw)


DETECTORS: dict[str, Callable[..., Detector]] = {"centerface": _centerface}


def create_detector(config: DetectConfig, **kw: Any) -> Detector:
    """Build the detector named by ``config.model``; unknown names list the valid ones."""
    try:
        factory = DETECTORS[config.model]
    except KeyError:
        raise ConfigError(f"unknown detector {config.model!r}; choose from: {', '.join(sorted(DETECTORS))}") from None
    return factory(config, **kw)


__all__ = ["DETECTORS", "Detector", "create_detector"]
