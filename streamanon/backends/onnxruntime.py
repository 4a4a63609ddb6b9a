"""ONNX Runtime backend with an explicit, logged execution-provider list.

A provider that is asked for but not available is an error that lists the available
ones: streamanon never silently falls back to a slower device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# ORT's own logger writes to stderr; 3 = errors only, so warnings never reach the user.
_ORT_QUIET = 3


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


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
            + ("; for CUDA install 'streamanon[ort-gpu]'" if any("CUDA" in m or "Tensorrt" in m for m in missing) else "")
        )
    return list(requested)


class OrtBackend:
    """Run an ONNX model; describes its own inputs and outputs.

    Args:
        model: path or serialized bytes of the model.
        providers: execution providers in priority order.
        threads: intra-op threads (0 = ORT default).
    """

    def __init__(self, model: str | bytes, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0):
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
            self.session = ort.InferenceSession(model, sess_options=opts, providers=chosen)
        except Exception as exc:  # ORT raises its own untyped errors for bad models
            raise ModelError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from exc
        self.providers = self.session.get_providers()
        # CPU threads one call runs on (live mode's size fit counts core-milliseconds)
        self.threads_per_call = threads or max(1, os.cpu_count() or 1)
        log.info("ONNX Runtime providers: %s", ", ".join(self.providers))

    def input_spec(self) -> list[tuple[str, list[Any], str]]:
        return [(i.name, list(i.shape), i.type) for i in self.session.get_inputs()]

    def output_spec(self) -> list[tuple[str, list[Any], str]]:
        return [(o.name, list(o.shape), o.type) for o in self.session.get_outputs()]

    def infer(self, inputs: dict[str, NDArray[np.float32]], outputs: Sequence[str] | None = None) -> list[NDArray[Any]]:
        result: list[NDArray[Any]] = self.session.run(list(outputs) if outputs else None, inputs)
        return result
