"""Anonymiser factories: one fresh anonymiser per run, models and face banks shared."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..errors import ConfigError, MissingDependencyError
from ..types import Detections
from .adversarial import AdversarialAnonymizer, AdversarialModels
from .align import Landmarker68
from .dp import DPPixelateAnonymizer
from .generate import GenerateAnonymizer, GenerateModels
from .generate_adversarial import GenerateAdversarialAnonymizer
from .ksame import DlibFaceEmbedder, FaceEmbedder, FacePool, KSameAnonymizer, KSameCollector, load_face_bank
from .methods import BlurAnonymizer, IdentityAnonymizer, PixelateAnonymizer, SolidAnonymizer
from .surrogate import SurrogateAnonymizer
from .surrogate_bank import SurrogateBank, surrogate_bank
from .svd import SVDAnonymizer

log = logging.getLogger(__name__)

# name -> builder(config); k-same is built with its pool (``AnonymizerFactory.__call__``).
METHODS: dict[str, Callable[[AnonymizeConfig], Any] | None] = {
    "blur": BlurAnonymizer,
    "pixelate": PixelateAnonymizer,
    "solid": SolidAnonymizer,
    "dp-pixelate": DPPixelateAnonymizer,
    "svd": SVDAnonymizer,
    "k-same": None,
    "adversarial": None,
    "generate": None,
    "surrogate": None,
}
# Methods defined over a set of faces: a first pass collects the set (``ksame``).
POOLED = frozenset({"k-same"})
# Methods that work on aligned chips (and can align on 68 landmarks; generate always does).
CHIP_METHODS = frozenset({"k-same", "svd", "generate"})
# Methods only the evaluation harness may ask for.
_EVAL_ONLY: dict[str, Callable[[AnonymizeConfig], Any]] = {"none": IdentityAnonymizer}


def check_method(name: str, allow_eval_only: bool = False) -> None:
    """ConfigError naming the valid methods when ``name`` is not one."""
    table = {**METHODS, **_EVAL_ONLY} if allow_eval_only else METHODS
    if name not in table:
        raise ConfigError(f"unknown method {name!r}; choose from: {', '.join(sorted(table))}")


class AnonymizerFactory:
    """Builds a fresh anonymiser for every run of ``config.method``.

    What is loaded once (the face bank's chips) lives here and is shared, read-only, by the
    anonymisers it builds; per-run and per-track state lives in the anonymisers.
    """

    def __init__(self, config: AnonymizeConfig, *, allow_eval_only: bool = False) -> None:
        check_method(config.method, allow_eval_only)
        self.config = config
        self.name = config.method
        self.pooled = config.method in POOLED
        self._bank: list[tuple[NDArray[np.float32], str, NDArray[np.float32] | None]] = []
        if config.generate_adversarial and config.method != "generate":
            raise ConfigError(
                f"--adversarial is for --method generate, not {config.method!r} "
                "(--method adversarial perturbs the original face)"
            )
        perturbs = config.method == "adversarial" or config.generate_adversarial
        adversarial_bank = perturbs and config.adv_objective != "untargeted"
        if config.face_bank and not self.pooled and not adversarial_bank and config.method != "surrogate":
            raise ConfigError(
                "--face-bank is for --method k-same, surrogate and adversarial (or generate --adversarial) "
                f"--objective targeted|k-anonymity, not {config.method!r}"
            )
        # adversarial (and generate --adversarial): the torch recogniser and dlib's 5-point
        # predictor, once per process
        self.adversarial: AdversarialModels | None = None
        if perturbs:
            self.adversarial = AdversarialModels(config)
        # One 68-point predictor per process, shared read-only by every run's anonymiser.
        self.landmarker: Landmarker68 | None = None
        if config.landmarks == "68" or config.method in ("generate", "surrogate"):
            if config.method not in CHIP_METHODS and config.method != "surrogate":
                raise ConfigError(f"--landmarks 68 is for {', '.join(sorted(CHIP_METHODS))}, not {config.method!r}")
            self.landmarker = Landmarker68()
        # generate: the face generator, once per process (with the 68-point predictor above)
        self.generate: GenerateModels | None = None
        if config.method == "generate":
            self.generate = GenerateModels(config, landmarker=self.landmarker)
        # surrogate: the bank of composites (the shipped one, or built from --face-bank), once per process
        self.surrogate_bank: SurrogateBank | None = None
        if config.method == "surrogate":
            self.surrogate_bank = surrogate_bank(config.face_bank)
        # k-same counts persons: faces are grouped by dlib's recogniser where it is installed.
        self.embedder: FaceEmbedder | None = None
        if self.pooled:
            try:
                self.embedder = DlibFaceEmbedder()
            except MissingDependencyError:
                log.warning(
                    "k-same: dlib is not installed, so faces of one person are not grouped and k counts faces, "
                    "not people (pip install 'streamanon[align]')"
                )

    def load_bank(self, detect: Callable[[NDArray[np.uint8]], Detections]) -> None:
        """Read ``config.face_bank`` with the product's detector (once per process)."""
        if self.pooled and self.config.face_bank and not self._bank:
            self._bank = load_face_bank(self.config.face_bank, detect, embedder=self.embedder)
        if self.adversarial is not None and self.config.face_bank:
            self.adversarial.load_gallery(self.config.face_bank, detect)

    @property
    def bank_faces(self) -> int:
        """Faces read from ``--face-bank`` (0 without one)."""
        return len(self._bank)

    def new_pool(self) -> FacePool:
        """A pool holding the face bank (the set a run's faces are added to)."""
        pool = FacePool(self.config.k)
        for chip, label, emb in self._bank:
            pool.add(chip, label, emb)
        return pool

    def collector(self, pool: FacePool, label: str = "") -> KSameCollector:
        """The first-pass anonymiser that adds a run's faces to ``pool``."""
        return KSameCollector(self.config, pool, label, self.landmarker, self.embedder)

    def __call__(self, pool: FacePool | None = None) -> Any:
        """A fresh anonymiser; pooled methods take the run's pool (default: the bank alone)."""
        if self.pooled:
            return KSameAnonymizer(self.config, pool if pool is not None else self.new_pool(), self.landmarker)
        if self.surrogate_bank is not None:
            return SurrogateAnonymizer(self.config, self.surrogate_bank, self.landmarker)
        if self.name == "svd":
            return SVDAnonymizer(self.config, self.landmarker)
        if self.generate is not None:
            if self.adversarial is not None:
                return GenerateAdversarialAnonymizer(self.config, self.generate, self.adversarial)
            return GenerateAnonymizer(self.config, self.generate)
        if self.adversarial is not None:
            return AdversarialAnonymizer(self.config, self.adversarial)
        build = METHODS.get(self.name) or _EVAL_ONLY[self.name]
        return build(self.config)


class FixedFactory:
    """A "factory" returning one caller-built anonymiser every run (tests, custom code)."""

    pooled = False
    bank_faces = 0

    def __init__(self, anonymizer: Any) -> None:
        self.anonymizer = anonymizer
        self.name = getattr(anonymizer, "name", "given")

    def load_bank(self, detect: Callable[[NDArray[np.uint8]], Detections]) -> None:
        return None

    def new_pool(self) -> FacePool:
        raise ConfigError("a caller-built anonymiser takes no face pool")

    def collector(self, pool: FacePool, label: str = "") -> KSameCollector:
        raise ConfigError("a caller-built anonymiser takes no face pool")

    def __call__(self, pool: FacePool | None = None) -> Any:
        return self.anonymizer
