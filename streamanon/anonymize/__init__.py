"""Anonymisers behind one protocol, a name registry and per-run factories."""

from __future__ import annotations

from ..config import AnonymizeConfig
from .base import Anonymizer, AnonymizerSession, FaceAnonymizer, FrameInfo
from .factory import METHODS, POOLED, AnonymizerFactory, FixedFactory, MethodSpec, check_method
from .methods import (
    BlurAnonymizer,
    IdentityAnonymizer,
    PixelateAnonymizer,
    RegionAnonymizer,
    SolidAnonymizer,
    mask_whole_frame,
)


def create_anonymizer(config: AnonymizeConfig, *, allow_eval_only: bool = False) -> Anonymizer:
    """One anonymiser for ``config.method`` (a pooled method gets the bank-only pool);
    unknown names list valid ones. Runs build theirs through ``AnonymizerFactory``."""
    anonymizer: Anonymizer = AnonymizerFactory(config, allow_eval_only=allow_eval_only)()
    return anonymizer


__all__ = [
    "METHODS",
    "POOLED",
    "Anonymizer",
    "AnonymizerFactory",
    "AnonymizerSession",
    "BlurAnonymizer",
    "FaceAnonymizer",
    "FixedFactory",
    "FrameInfo",
    "IdentityAnonymizer",
    "MethodSpec",
    "PixelateAnonymizer",
    "RegionAnonymizer",
    "SolidAnonymizer",
    "check_method",
    "create_anonymizer",
    "mask_whole_frame",
]
