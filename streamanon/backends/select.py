"""Which inference backend and precision a model uses, decided once, before it loads.

The same rules for every model (``choose_engine`` on an ``EngineConfig``); the detector's
``choose_backend`` applies them to the engine part of its ``DetectConfig``.

``backend="auto"`` (the default) takes, in order:

1. TensorRT, when the package, a CUDA GPU and a matching engine are all there;
2. ONNX Runtime on a GPU, when a GPU execution provider is installed or ``providers``
   names one;
3. OpenVINO on the CPU (bf16 where the CPU computes it natively, else fp32);
4. ONNX Runtime on the CPU (fp32).

``precision="auto"`` is the fastest precision of the chosen backend whose detections were
measured against fp32 (README, "Speed"): fp16 on TensorRT, bf16 on OpenVINO with native
bf16, fp32 otherwise. An explicit precision that the named backend cannot run is a
``ConfigError``; under ``auto`` it only narrows the candidates (fp16 beyond TensorRT falls
back to fp32, never to something less precise than asked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import DetectConfig
from ..errors import ConfigError, EngineError, MissingDependencyError
from . import onnxruntime, openvino, tensorrt  # used as modules: tests replace their probes
from .base import EngineConfig

log = logging.getLogger(__name__)

CPU_PROVIDERS = ("CPUExecutionProvider",)
# ONNX Runtime providers that run on an accelerator (others, e.g. Azure, are not devices)
GPU_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
)
PRECISIONS = {"tensorrt": ("fp16", "fp32"), "openvino": ("bf16", "fp32"), "onnxruntime": ("fp32",)}
# Score thresholds are multiplied by this for a backend of that precision. bf16 (8-bit
# mantissa) scores faces near the threshold lower than fp32: on the shared clips the
# bf16/fp32 score ratio of faces scored 0.2-0.5 had 1st percentiles 0.78-0.95, so at an
# unchanged threshold bf16 found 94.4-97.9% of fp32's faces at 0.2 and coverage fell to
# 96.7-98.3%; with this margin it finds 99.75-99.84% (benchmarks/probe_precision.py,
# README "Speed"). Its cost in false positives (benchmarks/probe_margin.py; fp32 scores at
# 0.2 x margin, an upper bound for bf16's, on the 198-image WIDER subset): precision
# .576 / .504 / .428 and false positives 1259 / 1710 / 2367 at margins 1 / 0.9 / 0.8, for
# recall .672 / .684 / .698; no box on the 120 no-face frames at any of them. Kept at 0.8:
# a face lost is a leak while a false positive masks background (and no longer grows into
# a giant coasting box, track/tracker.py); 0.9 would need probe_margin.py's agreement
# column on a CPU with native bf16 to show that bf16 still finds fp32's faces.
SCORE_MARGIN = {"bf16": 0.8}


def _describe(config: EngineConfig, on_cpu: bool, reason: str) -> dict[str, object]:
    device = "cpu" if on_cpu else "gpu"
    out: dict[str, object] = {"backend": config.backend, "precision": config.precision, "device": device}
    if config.backend == "onnxruntime":
        out["providers"] = list(config.providers)
    out["why"] = reason
    return out


@dataclass(frozen=True)
class EngineChoice:
    """A concrete backend for one model: ``config`` has no ``auto`` left in backend or precision."""

    config: EngineConfig
    on_cpu: bool
    reason: str

    @property
    def score_margin(self) -> float:
        """Factor for score thresholds on this backend (1.0: the fp32 thresholds)."""
        return SCORE_MARGIN.get(self.config.precision, 1.0)

    def __str__(self) -> str:
        c = self.config
        return f"{c.backend} {c.precision} on the {'CPU' if self.on_cpu else 'GPU'} ({self.reason})"

    def describe(self) -> dict[str, object]:
        """For run reports and logs."""
        return _describe(self.config, self.on_cpu, self.reason)


@dataclass(frozen=True)
class BackendChoice:
    """The detector's concrete backend: ``config`` is its ``DetectConfig`` with no ``auto``
    left in backend or precision (the pipeline derives worker and thread counts from it)."""

    config: DetectConfig
    on_cpu: bool
    reason: str

    @property
    def engine_choice(self) -> EngineChoice:
        """The same choice in the terms of every model (``backends.loader.open_backend``)."""
        return EngineChoice(EngineConfig.from_detect(self.config), self.on_cpu, self.reason)

    @property
    def score_margin(self) -> float:
        """Factor for score thresholds on this backend (1.0: the fp32 thresholds)."""
        return SCORE_MARGIN.get(self.config.precision, 1.0)

    def __str__(self) -> str:
        return str(self.engine_choice)

    def describe(self) -> dict[str, object]:
        """For run reports and logs."""
        return self.engine_choice.describe()


def _gpu_providers() -> list[str]:
    if onnxruntime.cpu_only_build():  # no GPU provider to find: do not import ONNX Runtime for nothing
        return []
    return [p for p in onnxruntime.available_providers() if p in GPU_PROVIDERS]


def _ort_choice(config: EngineConfig, reason: str) -> EngineChoice:
    if config.precision not in ("auto", "fp32"):
        raise ConfigError(f"ONNX Runtime runs the model in fp32, not {config.precision}; use --precision fp32 or auto")
    asked = _gpu_providers() if list(config.providers) == ["auto"] else list(config.providers)
    on_cpu = not any(p in GPU_PROVIDERS for p in asked)
    return EngineChoice(replace(config, backend="onnxruntime", precision="fp32"), on_cpu, reason)


def _openvino_choice(config: EngineConfig, reason: str) -> EngineChoice:
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if openvino.native_bf16() else "fp32"
    elif precision not in PRECISIONS["openvino"]:
        raise ConfigError(f"OpenVINO runs bf16 or fp32 on the CPU, not {precision}")
    elif precision == "bf16" and not openvino.native_bf16():
        raise ConfigError(openvino.NO_NATIVE_BF16)
    return EngineChoice(replace(config, backend="openvino", precision=precision), True, reason)


def _tensorrt_choice(
    config: EngineConfig, onnx_sha256: Callable[[], str], model: str, source: str | None
) -> EngineChoice:
    precision = "fp16" if config.precision == "auto" else config.precision
    if precision not in PRECISIONS["tensorrt"]:
        raise ConfigError(f"TensorRT engines are built in fp16 or fp32, not {precision}")
    tensorrt.usable_engine(Path(config.engine_dir), model, onnx_sha256, precision, source)
    return EngineChoice(replace(config, backend="tensorrt", precision=precision), False, "asked for")


def choose_engine(
    config: EngineConfig, onnx_sha256: Callable[[], str], model: str, source: str | None = None
) -> EngineChoice:
    """The backend ``config`` asks for model ``model``, with ``auto`` resolved (see the module doc).

    ``onnx_sha256`` is called only when a TensorRT engine file has to be checked; ``source``
    is how ``build_engines.py --model`` names the model in rebuild hints (default ``model``).

    Raises:
        ConfigError: a precision the named backend cannot run.
        MissingDependencyError, EngineError: a named backend that cannot be used here.
    """
    if config.backend == "onnxruntime":
        return _ort_choice(config, "asked for")
    if config.backend == "openvino":
        if not openvino.openvino_available():
            raise MissingDependencyError.for_extra("openvino", "openvino")
        return _openvino_choice(config, "asked for")
    if config.backend == "tensorrt":
        return _tensorrt_choice(config, onnx_sha256, model, source)

    why = []
    fallback = replace(config, precision="fp32") if config.precision == "fp16" else config
    if config.precision != "bf16":  # TensorRT and ONNX Runtime do not run bf16
        try:
            trt = _tensorrt_choice(config, onnx_sha256, model, source)
            return replace(trt, reason="auto: TensorRT engine and GPU found")
        except (MissingDependencyError, EngineError) as exc:
            why.append(f"TensorRT not used ({exc})")
        explicit = tuple(config.providers) not in (CPU_PROVIDERS, ("auto",))
        gpus = _gpu_providers()
        if explicit or gpus:
            providers = config.providers if explicit else ("auto",)
            what = "the ONNX Runtime providers asked for" if explicit else "an ONNX Runtime GPU provider"
            return _ort_choice(replace(fallback, providers=providers), "; ".join([*why, f"auto: {what}"]))
    if openvino.openvino_available():
        return _openvino_choice(fallback, "; ".join([*why, "auto: no GPU, OpenVINO on the CPU"]))
    if config.precision == "bf16":
        raise MissingDependencyError.for_extra("openvino", "openvino")
    return _ort_choice(fallback, "; ".join([*why, "auto: no GPU and no OpenVINO, ONNX Runtime on the CPU"]))


def choose_backend(config: DetectConfig, onnx_sha256: Callable[[], str], model: str = "centerface") -> BackendChoice:
    """``choose_engine`` for the detector: the result carries the whole ``DetectConfig``."""
    chosen = choose_engine(EngineConfig.from_detect(config), onnx_sha256, model)
    c = chosen.config
    resolved = replace(config, backend=c.backend, precision=c.precision, providers=c.providers)
    return BackendChoice(resolved, chosen.on_cpu, chosen.reason)
