"""Run the product itself (detector + tracker + anonymiser via ``Pipeline``) on stills.

Identity datasets are often tight 150x150 face chips: a face that fills the frame is
not what a face detector is trained on. Each image is therefore padded with a neutral
border (``pad`` x its long side on every side, at most ``PAD_MAX`` pixels) before the
product sees it and cropped back afterwards. Faces the product still does not find are reported as "missed" and
count as leaked.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ..anonymize import METHODS, create_anonymizer
from ..anonymize.mask import union_mask
from ..config import AnonymizeConfig, PipelineConfig
from ..detect import Detector
from ..errors import AnonymizationError, ConfigError
from ..pipeline import Pipeline, Stages
from ..types import Detections, Frame

log = logging.getLogger(__name__)

PAD_VALUE = 114  # neutral grey border
PAD_MAX = 256  # px; large photos are not tight crops and need no more
EVAL_METHODS = ("none", *sorted(METHODS))


@dataclass(frozen=True)
class MethodSpec:
    """A method to evaluate: ``name`` or ``name:param`` (``blur:2`` = blur_strength 2,
    ``pixelate:16`` = 16 blocks), applied on top of the run's ``AnonymizeConfig``."""

    key: str
    config: AnonymizeConfig


def parse_methods(text: str, base: AnonymizeConfig) -> list[MethodSpec]:
    """``"none,blur,pixelate:4"`` -> specs; unknown names and bad parameters raise ConfigError."""
    specs: list[MethodSpec] = []
    for raw in (t.strip() for t in text.split(",")):
        if not raw:
            continue
        name, _, param = raw.partition(":")
        if name not in EVAL_METHODS:
            raise ConfigError(f"unknown method {name!r}; choose from: {', '.join(EVAL_METHODS)}")
        cfg = dataclasses.replace(base, method=name)
        if param:
            try:
                if name == "blur":
                    cfg = dataclasses.replace(cfg, blur_strength=float(param))
                elif name == "pixelate":
                    cfg = dataclasses.replace(cfg, pixel_blocks=int(param))
                else:
                    raise ConfigError(f"method {name!r} takes no parameter (got {raw!r})")
            except ValueError as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(f"invalid parameter in method {raw!r}: {exc}") from None
        if raw in (s.key for s in specs):
            continue
        specs.append(MethodSpec(raw, cfg))
    if not specs:
        raise ConfigError("no method given")
    return specs


@dataclass
class ProductOutput:
    """The product's result on one still: anonymised pixels, the faces it masked
    (Detections in the still's pixels) and the boolean mask of what it changed."""

    image: NDArray[np.uint8]
    dets: Detections
    mask: NDArray[np.bool_]


class ProductRunner:
    """The product's stages for each method; one ``Pipeline`` run per still.

    Args:
        config: the run's settings (detector, tracker, mask shape/scale).
        pad: border added on every side before the product runs, as a fraction of the
            image's long side (0 = none; at most ``PAD_MAX`` pixels).
    """

    def __init__(self, config: PipelineConfig, pad: float = 0.5) -> None:
        if not 0.0 <= pad <= 2.0:
            raise ConfigError(f"invalid pad={pad!r}: expected a number in [0, 2]")
        self.config = config
        self.pad = pad
        self._stages: dict[str, Stages] = {}
        self._detector: Detector | None = None

    def _stages_for(self, spec: MethodSpec) -> Stages:
        st = self._stages.get(spec.key)
        if st is None:
            cfg = dataclasses.replace(self.config, anonymize=spec.config)
            anonymizer = create_anonymizer(spec.config, allow_eval_only=True)
            st = Stages(cfg, detector=self._detector, anonymizer=anonymizer)
            self._detector = st.detector  # one detector (one ONNX session) for every method
            self._stages[spec.key] = st
        return st

    def run(self, image: NDArray[np.uint8], spec: MethodSpec) -> ProductOutput:
        """Anonymise one RGB still with the product (padded, then cropped back).

        Raises:
            AnonymizationError: the product failed on the image (it was fully masked).
        """
        h, w = image.shape[:2]
        p = min(PAD_MAX, round(self.pad * max(h, w)))
        padded = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3) if p else image
        stages = self._stages_for(spec)
        pipe = Pipeline(stages.config, stages)
        results = list(pipe.run([Frame(np.ascontiguousarray(padded), 0)]))
        res = results[0]
        if res.failed:
            raise AnonymizationError(f"the product failed on an image: {res.failed}")
        out = np.ascontiguousarray(res.image[p : p + h, p : p + w])
        a = spec.config
        mask = union_mask(res.dets, padded.shape[1], padded.shape[0], a.shape, a.mask_scale, a.mask_margin)[p : p + h, p : p + w]
        dets = res.dets
        if p:
            dets = dataclasses.replace(dets, xyxy=dets.xyxy - p, landmarks=dets.landmarks - p).clipped(w, h)
        return ProductOutput(out, dets, np.ascontiguousarray(mask))
