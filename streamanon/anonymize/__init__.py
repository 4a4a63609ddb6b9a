"""Anonymisers behind one protocol and a name registry."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..errors import ConfigError
from ..types import Detections
from .methods import (
    BlurAnonymizer,
    IdentityAnonymizer,
    PixelateAnonymizer,
    RegionAnonymizer,
    SolidAnonymizer,
    mask_whole_frame,
)


class Anonymizer(Protocol):
    """``apply(image, dets)`` returns a new image with every face in ``dets`` anonymised."""

    name: str

    def apply(self, image: NDArray[np.uint8], dets: Detections) -> NDArray[np.uint8]: ...


METHODS: dict[str, type[RegionAnonymizer]] = {
    "blur": BlurAnonymizer,
    "pixelate": PixelateAnonymizer,
    "solid": SolidAnonymizer,
}
# Methods only the evaluation harness may ask for.
_EVAL_ONLY: dict[str, type[RegionAnonymizer]] = {"none": IdentityAnonymizer}


def create_anonymizer(config: AnonymizeConfig, *, allow_eval_only: bool = False) -> Anonymizer:
    """Build the anonymiser named by ``config.method``; unknown names list valid ones."""
    table = {**METHODS, **_EVAL_ONLY} if allow_eval_only else METHODS
    try:
        cls = table[config.method]
    except KeyError:
        raise ConfigError(f"unknown method {config.method!r}; choose from: {', '.join(sorted(table))}") from None
    return cls(config)


__all__ = [
    "METHODS",
    "Anonymizer",
    "BlurAnonymizer",
    "PixelateAnonymizer",
    "SolidAnonymizer",
    "create_anonymizer",
    "mask_whole_frame",
]
