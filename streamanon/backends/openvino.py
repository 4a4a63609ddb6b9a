"""OpenVINO backend: the CPU path that `backend auto` takes when no GPU is usable.

Why a second CPU runtime: on CPUs with native bfloat16 (AVX512-BF16 / AMX) OpenVINO runs
CenterFace in bf16 about 1.75x faster than ONNX Runtime in fp32 (same 1-thread call,
benchmarks/probe_precision.py), and on the 2-core target machine the detector is the
pipeline's bound. In fp32 the two runtimes agree to 1e-5 and run at the same speed.

The network is compiled once per input shape (a video has one) with static dimensions;
concurrent ``infer`` calls (the pipeline's detector workers) each take their own infer
request from a pool, so they run in parallel on ``streams`` CPU streams.
"""

from __future__ import annotations

import logging
import queue
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
        threads: CPU threads per concurrent call (0: OpenVINO's default).
        streams: concurrent calls that run in parallel (the pipeline's detector workers).
    """

    def __init__(self, model: bytes, precision: str = "fp32", threads: int = 1, streams: int = 1) -> None:
        if precision not in _HINTS:
            raise ConfigError(f"OpenVINO runs fp32 or bf16, not {precision!r}")
        self._core = shared_core()
        if precision == "bf16" and not native_bf16(self._core):
            raise ConfigError("precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); use fp32")
        try:
            self._model = self._core.read_model(model)
        except Exception as exc:  # OpenVINO raises its own untyped errors for bad models
            raise ModelError(f"OpenVINO cannot read the model: {str(exc).splitlines()[0]}") from exc
        self.precision = precision
        self.threads = max(0, threads)
        self.streams = max(1, streams)
        self.providers = [f"OpenVINO CPU {precision}"]
        self._lock = threading.Lock()
        self._compiled: OrderedDict[tuple[int, ...], tuple[Any, queue.SimpleQueue[Any]]] = OrderedDict()
        log.info("OpenVINO %s on the CPU: %d stream(s) x %s thread(s)", precision, self.streams, self.threads or "default")

    def _compile(self, shape: tuple[int, ...]) -> tuple[Any, queue.SimpleQueue[Any]]:
        with self._lock:
            hit = self._compiled.get(shape)
            if hit is not None:
                self._compiled.move_to_end(shape)
            else:
                model = self._model.clone()
                model.reshape({model.inputs[0]: list(shape)})
                config = {
                    "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                    "PERFORMANCE_HINT": "LATENCY",
                    "NUM_STREAMS": str(self.streams),
                    # Decode and encode threads share these cores: never pin to them.
                    "ENABLE_CPU_PINNING": "NO",
                }
                if self.threads:
                    config["INFERENCE_NUM_THREADS"] = str(self.threads * self.streams)
                try:
                    compiled = self._core.compile_model(model, "CPU", config)
                except Exception as exc:
                    raise ModelError(f"OpenVINO cannot compile the model for {shape}: {str(exc).splitlines()[0]}") from exc
                hit = self._compiled[shape] = (compiled, queue.SimpleQueue())
                while len(self._compiled) > MAX_SHAPES:
                    self._compiled.popitem(last=False)  # calls in flight keep theirs alive
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
        compiled, free = self._compile(tuple(arr.shape))
        try:
            request = free.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            result = request.infer({0: arr})
            by_name = {o.get_any_name(): result[o] for o in compiled.outputs}
        finally:
            free.put(request)
        names = list(outputs) if outputs else list(by_name)
        return [by_name[n] for n in names]
