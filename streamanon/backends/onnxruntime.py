"""ONNX Runtime backend with an explicit, logged execution-provider list.

A provider that is asked for but not available is an error that lists the available
ones: streamanon never silently falls back to a slower device.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from ..errors import ConfigError, ModelError
from .base import Dim, TensorSpec

log = logging.getLogger(__name__)

# ORT's own logger writes to stderr; 3 = errors only, so warnings never reach the user.
_ORT_QUIET = 3


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cpu_only_build() -> bool:
    """True when the installed ``onnxruntime`` can have no GPU provider, read from its files
    without importing it (the import costs ~20 MiB of RSS that a run on OpenVINO never gets
    back). ONNX Runtime's GPU and accelerator providers ship as ``onnxruntime_providers_NAME``
    libraries beside its C API (CUDA, TensorRT, ROCm, MIGraphX, ...) or as DirectML.dll; the
    CPU build has only ``..._providers_shared``. Anything unexpected answers False: then ONNX
    Runtime itself is asked.
    """
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    try:
        names = [f.name for f in capi.iterdir()]
    except OSError:
        return False
    extra = [n for n in names if "onnxruntime_providers_" in n and "providers_shared" not in n]
    return bool(names) and not extra and not any(n.lower() == "directml.dll" for n in names)


def select_providers(requested: Sequence[str]) -> list[str]:
    """``requested`` in order, or ``ConfigError`` naming what is missing and what exists.

    ``"auto"`` expands to every available provider, GPU ones first (ORT's own order).
    """
    available = available_providers()
    if list(requested) == ["auto"]:
        return available
    missing = [p for p in requested if p not in available]
    if missing:
        raise ConfigError(
            f"execution provider(s) {', '.join(missing)} not available; available: {', '.join(available)}"
            + (
                "; for CUDA install 'streamanon[ort-gpu]'"
                if any("CUDA" in m or "Tensorrt" in m for m in missing)
                else ""
            )
        )
    return list(requested)


def _dtype(ort_type: str) -> str:
    """``tensor(float)`` -> ``float32``: the NumPy name every backend reports."""
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(inner, inner)


def _spec(arg: Any) -> TensorSpec:
    shape: tuple[Dim, ...] = tuple(d if isinstance(d, (int, str)) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _dtype(arg.type))


class OrtBackend:
    """Run an ONNX model; describes its own inputs and outputs (``backends.base.Backend``).

    Args:
        model: path or serialized bytes of the model.
        providers: execution providers in priority order.
        threads: intra-op threads (0 = ORT default).
        label: what the model is called in error messages (its file).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int = 0,
        label: str = "the model",
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = _ORT_QUIET
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        # Idle ORT threads must not spin: decode and encode need those cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.inter_op_num_threads = 1
        ort.set_default_logger_severity(_ORT_QUIET)
        chosen = select_providers(providers)
        try:
            self.session = ort.InferenceSession(
                str(model) if isinstance(model, Path) else model, sess_options=opts, providers=chosen
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad models
            raise ModelError(f"ONNX Runtime cannot load {label}: {str(exc).splitlines()[0]}") from exc
        self.providers: list[str] = self.session.get_providers()
        self._inputs = tuple(_spec(i) for i in self.session.get_inputs())
        self._outputs = tuple(_spec(o) for o in self.session.get_outputs())
        self._output_names = [o.name for o in self._outputs]
        # CPU threads one call runs on (live mode's size fit counts core-milliseconds)
        self.threads_per_call = threads or max(1, os.cpu_count() or 1)
        log.info("ONNX Runtime providers: %s", ", ".join(self.providers))

    def input_spec(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def output_spec(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def infer(
        self, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> dict[str, NDArray[Any]]:
        names = list(outputs) if outputs else self._output_names
        result: list[NDArray[Any]] = self.session.run(names, dict(inputs) if not isinstance(inputs, dict) else inputs)
        return dict(zip(names, result, strict=True))

    def close(self) -> None:
        """Nothing to release early: the session frees its memory when dropped."""
