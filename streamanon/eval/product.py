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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..anonymize import METHODS, POOLED, AnonymizerFactory
from ..anonymize.mask import union_mask
from ..config import AnonymizeConfig, PipelineConfig
from ..detect import Detector
from ..errors import AnonymizationError, ConfigError
from ..options import BY_DEST, EVAL_MAIN, GENERATE_ADVERSARIAL, KIND_NAMES, eval_params, given_flag
from ..pipeline import Pipeline, Stages
from ..types import Detections, Frame

log = logging.getLogger(__name__)

PAD_VALUE = 114  # neutral grey border
PAD_MAX = 256  # px; large photos are not tight crops and need no more
EVAL_METHODS = ("none", *sorted(METHODS))


@dataclass(frozen=True)
class MethodSpec:
    """A method to evaluate: ``name``, ``name:value`` (its main parameter) or
    ``name:key=value:key=value``, applied on top of the run's ``AnonymizeConfig``:
    ``blur:2`` (strength), ``pixelate:16`` (blocks), ``dp-pixelate:0.5`` (epsilon;
    keys ``eps``, ``cells``, ``m``), ``svd:0.01`` (epsilon; keys ``eps``, ``k``), ``k-same:5``
    (k; keys ``k``, ``bank``), ``adversarial:4`` (epsilon in /255 code values; keys ``eps``,
    ``steps``, ``objective``, ``k``, ``bank``), ``generate:PATH`` (generator ONNX; keys ``model``,
    ``fallback``, ``min``, and ``adv`` (epsilon in /255: turns ``--adversarial`` on), ``steps``,
    ``objective``: ``generate:adv=6``), ``surrogate:keep=gender`` (``--keep``; ``surrogate:gender``)."""

    key: str
    config: AnonymizeConfig

    @property
    def pooled(self) -> bool:
        return self.config.method in POOLED


def _with_params(cfg: AnonymizeConfig, name: str, params: list[str], raw: str) -> AnonymizeConfig:
    """``cfg`` with the spec's parameters, declared with their option in ``streamanon.options``
    (``eval_keys``; the main one in ``EVAL_MAIN``)."""
    table = eval_params(name)
    if not table:
        raise ConfigError(f"method {name!r} takes no parameter (got {raw!r})")
    values: dict[str, Any] = {}
    for item in params:
        key, eq, value = item.partition("=")
        if not eq:
            key, value = EVAL_MAIN[name], item
        if key not in table:
            raise ConfigError(f"method {name!r} has no parameter {key!r} (got {raw!r}); it takes: {', '.join(table)}")
        opt = table[key]
        try:
            values[opt.field.partition(".")[2]] = opt.to_field(opt.parse(value))
        except ConfigError:
            raise ConfigError(
                f"invalid parameter in method {raw!r}: {key}={value!r}: expected "
                + (", ".join(opt.choices) if opt.choices else KIND_NAMES[opt.kind])
            ) from None
    if name == "generate" and "epsilon" in values:  # generate:adv=EPS: the generated face perturbed
        values["generate_adversarial"] = True
    return dataclasses.replace(cfg, **values)


def parse_methods(text: str, base: AnonymizeConfig) -> list[MethodSpec]:
    """``"none,blur,pixelate:4,dp-pixelate:eps=0.5:cells=12"`` -> specs; unknown names and
    bad parameters raise ConfigError."""
    specs: list[MethodSpec] = []
    for raw in (t.strip() for t in text.split(",")):
        if not raw:
            continue
        name, *params = raw.split(":")
        if name not in EVAL_METHODS:
            raise ConfigError(f"unknown method {name!r}; choose from: {', '.join(EVAL_METHODS)}")
        # --adversarial (a flag of generate) applies to the generate specs only
        perturb = base.generate_adversarial and name == "generate"
        cfg = dataclasses.replace(base, method=name, generate_adversarial=perturb)
        if params:
            cfg = _with_params(cfg, name, params, raw)
        if raw in (s.key for s in specs):
            continue
        specs.append(MethodSpec(raw, cfg))
    if not specs:
        raise ConfigError("no method given")
    return specs


def check_method_options(given: Mapping[str, Any], specs: Sequence[MethodSpec], flag: str = "--methods") -> None:
    """ConfigError when an option given (``{dest: value}`` of the pipeline options typed) is
    an option of none of the methods evaluated: it would change nothing (``--dp-cells`` with
    ``--methods blur,solid``). ``generate`` with ``--adversarial`` (or ``generate:adv=``)
    takes the options of adversarial perturbation too."""
    names = {s.config.method for s in specs}
    names |= {GENERATE_ADVERSARIAL for s in specs if s.config.method == "generate" and s.config.generate_adversarial}
    for dest, value in given.items():
        opt = BY_DEST.get(dest)
        if opt is not None and opt.methods and not any(opt.applies_to_method(n) for n in names):
            raise ConfigError(
                f"{given_flag(opt, value)} is an option of --method {' or '.join(opt.methods)}, "
                f"not of any method in {flag} {','.join(s.key for s in specs)}"
            )


@dataclass
class ProductOutput:
    """The product's result on one still: anonymised pixels, the faces it masked
    (Detections in the still's pixels) and the boolean mask of what it changed."""

    image: NDArray[np.uint8]
    dets: Detections
    mask: NDArray[np.bool_]


def photo_seed(seed: int | None, index: int) -> int | None:
    """The secret of photo ``index``'s run: derived from the run's ``seed`` (None stays None:
    fresh OS entropy for every run anyway)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def photo_spec(spec: MethodSpec, index: int) -> MethodSpec:
    """``spec`` for photo ``index``'s own run: its own secret (``photo_seed``). A pooled method
    (k-same: one pool over the whole set) keeps its spec."""
    if spec.pooled or spec.config.seed is None:
        return spec
    cfg = dataclasses.replace(spec.config, seed=photo_seed(spec.config.seed, index))
    return MethodSpec(f"{spec.key}#{index}", cfg)


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
        self._pools: dict[str, Any] = {}
        self._detector: Detector | None = None

    def _stages_for(self, spec: MethodSpec, cache: bool = True) -> Stages:
        """The stages of ``spec`` (kept for the next photo unless ``cache`` is False: a
        photo's own secret; its models still come from the process-wide cache)."""
        st = self._stages.get(spec.key)
        if st is None:
            cfg = dataclasses.replace(self.config, anonymize=spec.config)
            factory = AnonymizerFactory(spec.config, allow_eval_only=True)
            st = Stages(cfg, detector=self._detector, anonymizer_factory=factory)
            self._detector = st.detector  # one detector (one ONNX session) for every method
            if cache:
                self._stages[spec.key] = st
        return st

    def _pad(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], int]:
        h, w = image.shape[:2]
        p = min(PAD_MAX, round(self.pad * max(h, w)))
        padded = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3) if p else image
        return np.ascontiguousarray(padded), p

    def prepare(self, images: Sequence[NDArray[np.uint8]], spec: MethodSpec) -> None:
        """First pass of a pooled method (k-same): the evaluated set's faces become its pool.

        k-Same is defined over the set it de-identifies: here that is every image the
        evaluation will run (plus the face bank, if the spec names one). No-op for others.
        """
        if not spec.pooled or spec.key in self._pools:
            return
        stages = self._stages_for(spec)
        factory = stages.anonymizer_factory
        pool = factory.new_pool()
        for n, image in enumerate(images):
            padded, _ = self._pad(image)
            pipe = Pipeline(stages.config, stages)
            for _ in pipe.run([Frame(padded, 0)], anonymizer=factory.collector(pool, label=f"image{n}:")):
                pass
        log.info("k-same pool for %s: %d faces", spec.key, len(pool))
        self._pools[spec.key] = pool

    def run(self, image: NDArray[np.uint8], spec: MethodSpec, photo: int | None = None) -> ProductOutput:
        """Anonymise one RGB still with the product (padded, then cropped back).

        ``photo``: the photo's index in the set; its run then gets its own secret
        (``photo_spec``), as separate runs of the product have: a method that draws from the
        secret (surrogate, generate) draws per photo, not one draw for the whole set.

        Raises:
            AnonymizationError: the product failed on the image (it was fully masked).
        """
        h, w = image.shape[:2]
        padded, p = self._pad(image)
        own = spec if photo is None else photo_spec(spec, photo)
        stages = self._stages_for(own, cache=own is spec)
        spec = own
        pipe = Pipeline(stages.config, stages)
        anonymizer = stages.new_anonymizer(pool=self._pools.get(spec.key)) if spec.pooled else None
        results = list(pipe.run([Frame(padded, 0)], anonymizer=anonymizer))
        res = results[0]
        if res.failed:
            raise AnonymizationError(f"the product failed on an image: {res.failed}")
        out = np.ascontiguousarray(res.image[p : p + h, p : p + w])
        a = spec.config
        full = union_mask(res.dets, padded.shape[1], padded.shape[0], a.shape, a.mask_scale, a.mask_margin)
        mask = full[p : p + h, p : p + w]
        dets = res.dets
        if p:
            dets = dataclasses.replace(dets, xyxy=dets.xyxy - p, landmarks=dets.landmarks - p).clipped(w, h)
        return ProductOutput(out, dets, np.ascontiguousarray(mask))
