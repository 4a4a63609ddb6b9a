"""OpenVINO backend: the CPU path that `backend auto` takes when no GPU is usable.

Why a second CPU runtime: on CPUs with native bfloat16 (AVX512-BF16 / AMX) OpenVINO runs
CenterFace in bf16 about 1.75x faster than ONNX Runtime in fp32 (same 1-thread call,
benchmarks/probe_precision.py), and on the 2-core target machine the detector is the
pipeline's bound. In fp32 the two runtimes agree to 1e-5 and run at the same speed.

The network is compiled once per input shape (a video has one) with static dimensions.
Calls are serialised: with two Python threads inside ``InferRequest.infer`` at once
(separate requests of one compiled model, two CPU streams), OpenVINO 2026.4's binding
deadlocked about once in ten runs of the batch tests, both threads blocked while copying
their inputs. One call at a time on all the callers' threads together runs CenterFace as
fast here (10.0 vs 10.2 ms a frame on 2 threads), and the detector workers still overlap
everything around the call (resizing, decoding the outputs, NMS).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, MissingDependencyError, ModelError, import_extra

log = logging.getLogger(__name__)

# streamanon precision name -> OpenVINO INFERENCE_PRECISION_HINT
_HINTS = {"fp32": "f32", "bf16": "bf16"}
NO_NATIVE_BF16 = "precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); use fp32"
# Compiled shapes kept (a video has one; a folder of photos of many sizes recompiles,
# ~0.2-0.6 s a shape here, instead of growing without bound).
MAX_SHAPES = 8


def _import_ov() -> Any:
    return import_extra("openvino", "openvino")


def openvino_available() -> bool:
    try:
        _import_ov()
    except MissingDependencyError:
        return False
    return True


_CORE_LOCK = threading.Lock()
_CORE: Any = None


def shared_core() -> Any:
    """The process's one ``openvino.Core``: every backend compiles through it.

    One Core per process, as OpenVINO recommends: a process may run many pipelines one
    after another (tests, eval, batch workers), and dropping a Core, with the last one the
    CPU plugin, while networks it compiled may still be in use is not safe.
    """
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = _import_ov().Core()
        return _CORE


def native_bf16(core: Any = None) -> bool:
    """Whether this CPU computes bfloat16 natively (OpenVINO then defaults to it)."""
    core = core or shared_core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_status() -> str:
    """One line for ``streamanon doctor``."""
    try:
        ov = _import_ov()
    except MissingDependencyError:
        return "not installed (pip install 'streamanon[openvino]')"
    bf16 = "native bf16" if native_bf16() else "no native bf16 (fp32 only)"
    return f"OpenVINO {ov.__version__.split('-')[0]}, CPU: {bf16}"


class OpenVinoBackend:
    """Run an ONNX model on the CPU with OpenVINO; same ``infer`` contract as ``OrtBackend``.

    Args:
        model: serialized ONNX (dynamic dimensions allowed).
        precision: ``fp32`` or ``bf16`` (bf16 on a CPU without native support is refused:
            OpenVINO would emulate it slower than fp32).
        threads: CPU threads per caller (0: OpenVINO's default).
        callers: concurrent callers (the pipeline's detector workers); their threads are
            pooled for the one call that runs at a time.
    """

    def __init__(self, model: bytes, precision: str = "fp32", threads: int = 1, callers: int = 1) -> None:
        if precision not in _HINTS:
            raise ConfigError(f"OpenVINO runs fp32 or bf16, not {precision!r}")
        self._core = shared_core()
        if precision == "bf16" and not native_bf16(self._core):
            raise ConfigError(NO_NATIVE_BF16)
        try:
            self._model = self._core.read_model(model)
        except Exception as exc:  # OpenVINO raises its own untyped errors for bad models
            raise ModelError(f"OpenVINO cannot read the model: {str(exc).splitlines()[0]}") from exc
        self.precision = precision
        self._threads = max(0, threads) * max(1, callers)  # per call; 0: OpenVINO's default
        self.providers = [f"OpenVINO CPU {precision}"]
        # CPU threads one call runs on (live mode's size fit counts core-milliseconds)
        self.threads_per_call = self._threads or max(1, os.cpu_count() or 1)
        self._lock = threading.Lock()  # held for a whole call: compile (first time) and infer
        self._compiled: OrderedDict[tuple[int, ...], tuple[Any, Any]] = OrderedDict()
        log.info("OpenVINO %s on the CPU: %s thread(s) a call", precision, self._threads or "default")

    def _compiled_for(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """(compiled model, its infer request) for ``shape``; the caller holds the lock."""
        hit = self._compiled.get(shape)
        if hit is not None:
            self._compiled.move_to_end(shape)
            return hit
        model = self._model.clone()
        model.reshape({model.inputs[0]: list(shape)})
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            # Decode and encode threads share these cores: never pin to them.
            "ENABLE_CPU_PINNING": "NO",
        }
        if self._threads:
            config["INFERENCE_NUM_THREADS"] = str(self._threads)
        try:
            compiled = self._core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot compile the model for {shape}: {str(exc).splitlines()[0]}") from exc
        hit = self._compiled[shape] = (compiled, compiled.create_infer_request())
        while len(self._compiled) > MAX_SHAPES:
            self._compiled.popitem(last=False)
        log.debug("OpenVINO compiled for input %s", shape)
        return hit

    def input_spec(self) -> list[tuple[str, list[Any], str]]:
        return [(i.get_any_name(), [str(d) for d in i.get_partial_shape()], str(i.get_element_type())) for i in self._model.inputs]

    def output_spec(self) -> list[tuple[str, list[Any], str]]:
        return [(o.get_any_name(), [str(d) for d in o.get_partial_shape()], str(o.get_element_type())) for o in self._model.outputs]

    def infer(self, inputs: dict[str, NDArray[np.float32]], outputs: Sequence[str] | None = None) -> list[NDArray[Any]]:
        if len(inputs) != 1:
            raise ModelError(f"the OpenVINO backend feeds one input, got {len(inputs)}")
        (arr,) = inputs.values()
        arr = np.ascontiguousarray(arr, np.float32)
        with self._lock:
            compiled, request = self._compiled_for(tuple(arr.shape))
            result = request.infer({0: arr})
            by_name = {o.get_any_name(): np.array(result[o]) for o in compiled.outputs}
        names = list(outputs) if outputs else list(by_name)
        return [by_name[n] for n in names]
