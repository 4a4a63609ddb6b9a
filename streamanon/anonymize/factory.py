"""Anonymiser factories: one fresh anonymiser per run, models and face banks shared."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig, EngineConfig
from ..errors import ConfigError, MissingDependencyError
from ..types import Detections
from .base import FaceAnonymizer
from .methods import BlurAnonymizer, IdentityAnonymizer, PixelateAnonymizer, SolidAnonymizer

# The methods that load models (and what they import) are imported when a factory builds
# one: the default path (solid, blur, pixelate) does not load their modules (with the live
# endpoints the CLI loads for live input only: ~4 MiB and ~30 ms of start-up; issue 24).
if TYPE_CHECKING:
    from ..models.landmarks import Landmarker68
    from .adversarial import AdversarialModels
    from .generate import GenerateModels
    from .ksame import FaceEmbedder, FacePool, KSameCollector
    from .surrogate import FaceResAttributes
    from .surrogate_bank import SurrogateBank

log = logging.getLogger(__name__)


def _dp(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from .dp import DPPixelateAnonymizer

    return DPPixelateAnonymizer(f.config)


def _svd(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from .svd import SVDAnonymizer

    return SVDAnonymizer(f.config, f.landmarker)


def _ksame(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from .ksame import KSameAnonymizer

    return KSameAnonymizer(f.config, pool if pool is not None else f.new_pool(), f.landmarker)


@dataclass(frozen=True)
class MethodSpec:
    """One anonymisation method, as the factory dispatches it.

    Attributes:
        name: the ``--method`` name.
        build: the per-run builder: ``build(factory, pool)`` -> a fresh anonymiser, from the
            factory's config and shared models (``pool``: the run's face pool, pooled methods).
        parameters: its own ``AnonymizeConfig`` fields: the options of this method. The
            option schema (``streamanon.options``) reads them: an option setting one of these
            fields applies to the methods listing it, and is refused with any other. Fields no
            spec lists (``SHARED_PARAMETERS``: the mask, the fill and blur a fallback uses, the
            seed) apply to every method.
        models: registry names (``engines/registry.json``) of the models it loads.
        pooled: defined over a set of faces; a first pass over the input collects the set.
        perturbs: perturbs the original face against dlib's recogniser (its torch port).
        chips: works on aligned chips (``--landmarks 68`` applies).
        adversarial: takes ``--adversarial`` (``generate_adversarial``): then perturbs its
            output like the ``perturbs`` methods, and their parameters apply too.
        eval_only: only the evaluation harness may ask for it.
    """

    name: str
    build: Callable[[AnonymizerFactory, FacePool | None], FaceAnonymizer]
    parameters: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    pooled: bool = False
    perturbs: bool = False
    chips: bool = False
    adversarial: bool = False
    eval_only: bool = False


def _generate(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from .generate import GenerateAnonymizer
    from .generate_adversarial import GenerateAdversarialAnonymizer

    assert f.generate is not None  # loaded by the factory for this method
    if f.adversarial is not None:
        return GenerateAdversarialAnonymizer(f.config, f.generate, f.adversarial)
    return GenerateAnonymizer(f.config, f.generate)


def _adversarial(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from .adversarial import AdversarialAnonymizer

    assert f.adversarial is not None  # loaded by the factory for this method
    return AdversarialAnonymizer(f.config, f.adversarial)


def _surrogate(f: AnonymizerFactory, pool: FacePool | None) -> FaceAnonymizer:
    from ..models.recognizer import shared_recogniser
    from .surrogate import SurrogateAnonymizer

    assert f.surrogate_bank is not None  # loaded by the factory for this method
    vetter = shared_recogniser() if f.config.keep else None  # the check of ``surrogate.VET_DISTANCE``
    return SurrogateAnonymizer(f.config, f.surrogate_bank, f.landmarker, f.attributes, vetter)


_ADVERSARIAL_MODELS = ("dlib-shape-5", "dlib-resnet-recognizer")
_ADVERSARIAL_PARAMS = ("epsilon", "adv_steps", "adv_objective", "adv_eot", "device", "face_bank", "k")
#: ``AnonymizeConfig`` fields every method may read: no spec lists them (``MethodSpec.parameters``).
SHARED_PARAMETERS = (
    "method",
    "shape",
    "mask_scale",
    "mask_margin",
    "feather",
    "color",
    "blur_strength",
    "pixel_blocks",
    "seed",
    "only_regions",
    "ignore_regions",
    "keep_faces",
)
SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec("blur", lambda f, _: BlurAnonymizer(f.config)),
        MethodSpec("pixelate", lambda f, _: PixelateAnonymizer(f.config)),
        MethodSpec("solid", lambda f, _: SolidAnonymizer(f.config)),
        MethodSpec("dp-pixelate", _dp, ("epsilon", "dp_cells", "dp_m")),
        MethodSpec("svd", _svd, ("epsilon", "svd_k", "svd_size", "landmarks"), chips=True),
        MethodSpec(
            "k-same",
            _ksame,
            ("k", "face_bank", "landmarks"),
            ("dlib-shape-5", "dlib-resnet-recognizer"),  # grouping faces by person, where dlib is installed
            pooled=True,
            chips=True,
        ),
        MethodSpec("adversarial", _adversarial, _ADVERSARIAL_PARAMS, _ADVERSARIAL_MODELS, perturbs=True),
        MethodSpec(
            "generate",
            _generate,
            ("generator", "generate_fallback", "generate_min_size", "generate_adversarial", "landmarks"),
            ("generator-64", "dlib-shape-68"),
            chips=True,
            adversarial=True,
        ),
        MethodSpec(
            "surrogate",
            _surrogate,
            ("face_bank", "k", "keep"),
            ("surrogate-bank", "dlib-shape-68", "dlib-shape-5", "dlib-resnet-recognizer"),  # the last two: --keep
        ),
        MethodSpec("none", lambda f, _: IdentityAnonymizer(f.config), eval_only=True),
    )
}
#: The product's methods (``--method``), name -> spec.
METHODS: dict[str, MethodSpec] = {n: s for n, s in SPECS.items() if not s.eval_only}
# Methods defined over a set of faces: a first pass collects the set (``ksame``).
POOLED = frozenset(n for n, s in METHODS.items() if s.pooled)
# Methods that work on aligned chips (and can align on 68 landmarks; generate always does).
CHIP_METHODS = frozenset(n for n, s in METHODS.items() if s.chips)


def check_method(name: str, allow_eval_only: bool = False) -> None:
    """ConfigError naming the valid methods when ``name`` is not one."""
    table = SPECS if allow_eval_only else METHODS
    if name not in table:
        raise ConfigError(f"unknown method {name!r}; choose from: {', '.join(sorted(table))}")


class AnonymizerFactory:
    """Builds a fresh anonymiser for every run of ``config.method``.

    What is loaded once (the face bank's chips) lives here and is shared, read-only, by the
    anonymisers it builds; per-run and per-track state lives in the anonymisers. Models come
    from the process-wide cache (``models.store``): factories with the same settings (the
    feeds of ``streamanon streams``) share them. ``engine`` places the generator (default:
    ``EngineConfig()``, auto).
    """

    # declared here: the specs' builders above read them
    config: AnonymizeConfig
    landmarker: Landmarker68 | None
    adversarial: AdversarialModels | None
    generate: GenerateModels | None

    def __init__(
        self, config: AnonymizeConfig, *, allow_eval_only: bool = False, engine: EngineConfig | None = None
    ) -> None:
        check_method(config.method, allow_eval_only)
        self.config = config
        self.name = config.method
        self.spec = SPECS[config.method]
        self.pooled = self.spec.pooled
        self._bank: list[tuple[NDArray[np.float32], str, NDArray[np.float32] | None]] = []
        if config.generate_adversarial and not self.spec.adversarial:
            raise ConfigError(
                f"--adversarial is for --method generate, not {config.method!r} "
                "(--method adversarial perturbs the original face)"
            )
        perturbs = self.spec.perturbs or config.generate_adversarial
        adversarial_bank = perturbs and config.adv_objective != "untargeted"
        if config.face_bank and not self.pooled and not adversarial_bank and config.method != "surrogate":
            raise ConfigError(
                "--face-bank is for --method k-same, surrogate and adversarial (or generate --adversarial) "
                f"--objective targeted|k-anonymity, not {config.method!r}"
            )
        # adversarial (and generate --adversarial): the torch recogniser and dlib's 5-point
        # predictor, once per process
        self.adversarial = None
        if perturbs:
            from .adversarial import AdversarialModels

            self.adversarial = AdversarialModels(config)
        # One 68-point predictor per process, shared read-only by every run's anonymiser.
        self.landmarker = None
        if config.landmarks == "68" or "dlib-shape-68" in self.spec.models:
            if config.landmarks == "68" and not self.spec.chips:  # surrogate fits 68 points itself
                raise ConfigError(f"--landmarks 68 is for {', '.join(sorted(CHIP_METHODS))}, not {config.method!r}")
            if config.method == "generate":
                from .generate import check_align_extra

                check_align_extra()  # the exact requirement, before dlib's own import error
            from ..models.landmarks import landmarker68

            self.landmarker = landmarker68()
        # generate: the face generator, once per process (with the 68-point predictor above)
        self.generate = None
        if any(m.startswith("generator") for m in self.spec.models):
            from .generate import GenerateModels

            self.generate = GenerateModels(config, landmarker=self.landmarker, engine=engine)
        # surrogate: the bank of composites (the shipped one, or built from --face-bank), once per process
        self.surrogate_bank: SurrogateBank | None = None
        self.attributes: FaceResAttributes | None = None
        if config.keep and config.method != "surrogate":
            raise ConfigError(f"--keep is for --method surrogate, not {config.method!r}")
        if "surrogate-bank" in self.spec.models:
            from .surrogate import FaceResAttributes
            from .surrogate_bank import surrogate_bank

            self.surrogate_bank = surrogate_bank(config.face_bank, config.k)
            if config.keep:  # FaceRes estimates each track's gender and age band once
                self.attributes = FaceResAttributes()
        # k-same counts persons: faces are grouped by dlib's recogniser where it is installed.
        self.embedder: FaceEmbedder | None = None
        if self.pooled:
            from .ksame import DlibFaceEmbedder

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
            from .ksame import load_face_bank

            self._bank = load_face_bank(self.config.face_bank, detect, embedder=self.embedder)
        if self.adversarial is not None and self.config.face_bank:
            self.adversarial.load_gallery(self.config.face_bank, detect)

    @property
    def bank_faces(self) -> int:
        """Faces read from ``--face-bank`` (0 without one)."""
        return len(self._bank)

    def new_pool(self) -> FacePool:
        """A pool holding the face bank (the set a run's faces are added to)."""
        from .ksame import FacePool

        pool = FacePool(self.config.k)
        for chip, label, emb in self._bank:
            pool.add(chip, label, emb)
        return pool

    def collector(self, pool: FacePool, label: str = "") -> KSameCollector:
        """The first-pass anonymiser that adds a run's faces to ``pool``."""
        from .ksame import KSameCollector

        return KSameCollector(self.config, pool, label, self.landmarker, self.embedder)

    def __call__(self, pool: FacePool | None = None) -> FaceAnonymizer:
        """A fresh anonymiser; pooled methods take the run's pool (default: the bank alone)."""
        return self.spec.build(self, pool)


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
