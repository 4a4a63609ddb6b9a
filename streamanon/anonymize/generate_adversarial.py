"""``generate --adversarial``: a synthetic face, then an adversarial perturbation on top of it.

Every face is first replaced by ``GenerateAnonymizer`` (unchanged: the same per-track latent,
landmark smoothing, compositing and fallbacks). The generated pixels are then perturbed by
``AdversarialAnonymizer.perturb_replaced``: L-inf PGD of at most ``--epsilon`` code values
around the GENERATED pixels, inside the same face mask (nothing outside it moves), pushing
dlib's embedding of the written face away from the ORIGINAL face's embedding (``untargeted``),
towards the track's decoy (``targeted``) or below rank k among the face bank and the
original (``k-anonymity``). Per-track warm starts work as for ``--method adversarial``.

Which faces are perturbed: detector rows whose box is at least the generator's
``generate_min_size`` and on which dlib's 5 points are found in the original frame. Rows the
generator served from its fallback for another reason (implausible 68-point fit) are
perturbed too (a bounded change of a blurred or solid face; harmless). The others (small
faces, coasting and look-back rows, no 5-point fit) keep the generator's output: they are
already anonymised (``kept_rows`` in the report).

What the perturbation adds: the generated face already shares no pixel with the original
inside the mask; the perturbation is against a recogniser that might still find identity in
what the generator kept (pose, expression, face shape from the landmarks, skin tone from the
context). It is measured white-box (dlib) and by transfer (FaceRes) in the README. Any error
of either stage propagates: the pipeline then masks the whole frame (fail closed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..types import Detections
from .adversarial import AdversarialAnonymizer, AdversarialModels
from .base import FaceAnonymizer, FrameInfo
from .generate import GenerateAnonymizer, GenerateModels


class GenerateAdversarialAnonymizer(FaceAnonymizer):
    """``GenerateAnonymizer`` followed by ``AdversarialAnonymizer.perturb_replaced`` (module doc)."""

    name = "generate"

    def __init__(self, config: AnonymizeConfig, generate: GenerateModels, adversarial: AdversarialModels) -> None:
        self.config = config
        self.generate = GenerateAnonymizer(config, generate)
        self.adversarial = AdversarialAnonymizer(config, adversarial)

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self.generate.track_started(track_id, info)
        self.adversarial.track_started(track_id, info)

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self.generate.track_ended(track_id, info)
        self.adversarial.track_ended(track_id, info)

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        generated = self.generate.apply(image, dets, info)
        if not len(dets):
            return generated
        side = np.minimum(dets.xyxy[:, 2] - dets.xyxy[:, 0], dets.xyxy[:, 3] - dets.xyxy[:, 1])
        return self.adversarial.perturb_replaced(image, generated, dets, side >= self.generate.min_size)

    def report(self) -> dict[str, Any]:
        adv = self.adversarial.report()
        adv.pop("solid_rows", None)  # perturb_replaced never masks: rows it skips keep the generated face
        adv["guarantee"] = (
            "the perturbation adds none: it is against dlib's ResNet (white-box), on top of the generated face, "
            "which replaces every pixel inside the mask"
        )
        return {**self.generate.report(), "adversarial": adv}
