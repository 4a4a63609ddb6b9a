"""OpenVINO backend: the CPU path that `backend auto` takes when no GPU is usable.

Why a second CPU runtime: on CPUs with native bfloat16 (AVX512-BF16 / AMX) OpenVINO runs
CenterFace in bf16 about 1.75x faster than ONNX Runtime in fp32 (same 1-thread call,
benchmarks/probe_precision.py), and on the 2-core target machine the detector is the
pipeline's bound. In fp32 the two runtimes agree to 1e-5 and run at the same speed.

The network is compiled once per input shape (a video has one) with static dimensions;
any ONNX model runs this way (dimensions fixed in the model must match the call's).

Concurrent callers (the pipeline's detector workers) each take an infer request of their
own and run it with the runtime's asynchronous API (``start_async`` with the caller's
array shared, not copied, then ``wait_for`` with the GIL released), on one CPU stream per
caller. Why not ``InferRequest.infer`` from several threads: with two Python threads in
it at once OpenVINO 2026.4's binding deadlocked about once in ten runs of the batch tests,
both threads blocked while copying their inputs into the requests' tensors, a copy the
shared-input asynchronous path does not make. ``concurrent=False`` keeps the previous
behaviour, one synchronous call at a time under a lock on all the callers' threads
together (benchmarks/bench_fps.py ``ovasync=0``), for comparison and as a way out.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, MissingDependencyError, ModelError, import_extra, reason
from .base import Dim, TensorSpec, pick_outputs

log = logging.getLogger(__name__)

# streamanon precision name -> OpenVINO INFERENCE_PRECISION_HINT
_HINTS = {"fp32": "f32", "bf16": "bf16"}
NO_NATIVE_BF16 = "precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); use fp32"
# Compiled shapes kept (a video has one; a folder of photos of many sizes recompiles,
# ~0.2-0.6 s a shape here, instead of growing without bound).
MAX_SHAPES = 8
# Whether callers run concurrently when ``OpenVinoBackend(concurrent=None)`` (module doc);
# True/False forces it everywhere (benchmarks' ovasync=1|0, the soak test). None, the
# default, is serialised except where a caller switches to concurrent calls because they
# measured faster there (``use_concurrent_calls``): ``streamanon streams`` with 2+ feeds,
# whose shared detector's workers then run at once (2 feeds at 720p25: +15% and +90% total
# fps in two runs, 4 feeds: +2% and +49%; bench_streams.py streams:ovasync=0|1, machine
# load 13-17 on 2 cores). One clip through one pipeline was not clearly faster (-13% to
# +11% per clip, +6% overall, bench_fps.py ovasync=0|1, load 6-9), so it stays serialised.
# The soak test (tests/backends/test_backends_soak.py) runs both ways.
CONCURRENT_CALLS: bool | None = None
# A call not finished after this long raises (its frames are masked: fail closed) instead
# of holding the pipeline for ever; a 1080p CenterFace call takes ~0.1-0.3 s here.
CALL_TIMEOUT_S = 120.0


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


def _spec(port: Any) -> TensorSpec:
    """A model port as a ``TensorSpec`` (OpenVINO keeps no names for dynamic dimensions)."""
    shape: tuple[Dim, ...] = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    element = port.get_element_type()
    try:
        dtype = np.dtype(element.to_dtype()).name
    except Exception:  # bf16 and friends have no NumPy type
        dtype = element.get_type_name()
    return TensorSpec(port.get_any_name(), shape, "bfloat16" if dtype == "bf16" else dtype)


class _Network:
    """One input shape's compiled network, its outputs (index, name) and its idle requests."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.outputs = [(i, o.get_any_name()) for i, o in enumerate(compiled.outputs)]
        self.idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def request(self) -> Any:
        """An idle infer request, a new one when every request is in use."""
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            return self.compiled.create_infer_request()


class OpenVinoBackend:
    """Run an ONNX model on the CPU with OpenVINO (``backends.base.Backend``).

    Args:
        model: serialized ONNX or its path (dynamic dimensions allowed).
        precision: ``fp32`` or ``bf16`` (bf16 on a CPU without native support is refused:
            OpenVINO would emulate it slower than fp32).
        threads: CPU threads per caller (0: OpenVINO's default).
        callers: concurrent callers (the pipeline's detector workers): one CPU stream of
            ``threads`` threads each, or, not concurrent, one call at a time on all their
            threads.
        label: what the model is called in error messages (its file).
        dynamic_axes: per input name, the axes to make dynamic when the model is read
            (a model shipped with a fixed input shape; OpenVINO reshapes it per call).
        concurrent: run the callers' calls at once through the asynchronous API (module
            doc); None: ``CONCURRENT_CALLS`` (serialised while that is None).
    """

    def __init__(
        self,
        model: bytes | str | Path,
        precision: str = "fp32",
        threads: int = 1,
        callers: int = 1,
        label: str = "the model",
        concurrent: bool | None = None,
        dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        if precision not in _HINTS:
            raise ConfigError(f"OpenVINO runs fp32 or bf16, not {precision!r}")
        self._core = shared_core()
        if precision == "bf16" and not native_bf16(self._core):
            raise ConfigError(NO_NATIVE_BF16)
        self._label = label
        try:
            # bytes are the model itself (ONNX needs no weights file); a str is a path
            self._model = self._core.read_model(str(model) if isinstance(model, Path) else model)
        except Exception as exc:  # OpenVINO raises its own untyped errors for bad models
            raise ModelError(f"OpenVINO cannot read {label}: {reason(exc)}") from exc
        if dynamic_axes:
            self._free(dynamic_axes)
        self.precision = precision
        self._callers = max(1, callers)
        self._threads = max(0, threads) * self._callers  # of the compiled network; 0: OpenVINO's default
        self.providers = [f"OpenVINO CPU {precision}"]
        self._set_concurrent(bool(CONCURRENT_CALLS) if concurrent is None else concurrent)
        self._set_specs()
        # Guards the compiled networks; when not concurrent, held for a whole call.
        self._lock = threading.Lock()
        self._compiled: OrderedDict[tuple[tuple[int, ...], ...], _Network] = OrderedDict()
        self._log_mode()

    def _free(self, dynamic_axes: Mapping[str, Sequence[int]]) -> None:
        """Make ``dynamic_axes`` of the named inputs dynamic (what the ONNX preparation hooks do)."""
        ov = _import_ov()
        shapes = {}
        for port in self._model.inputs:
            axes = dynamic_axes.get(port.get_any_name())
            if axes:
                shape = port.get_partial_shape()
                shapes[port] = ov.PartialShape([ov.Dimension() if i in axes else d for i, d in enumerate(shape)])
        try:
            self._model.reshape(shapes)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot make {self._label}'s input dynamic: {reason(exc)}") from exc

    def take_uint8_images(self, name: str) -> bool:
        """Feed input ``name`` (float NCHW, 3 channels) uint8 NHWC images as decoded.

        OpenVINO converts them to the network's layout and element type inside the
        compiled network (``PrePostProcessor``), so the caller passes a frame as it is: no
        float copy of it (11 MiB at 1280x736, one per call in flight), no transpose in
        Python. The values the network sees are the same (0-255 are exact in fp32 and
        bf16). Returns whether ``name`` now takes uint8 images; safe to call again.
        """
        spec = next((s for s in self._inputs if s.name == name), None)
        if spec is None or len(spec.shape) != 4:
            return False
        if spec.dtype == "uint8" and spec.shape[3] == 3:
            return True  # done before
        if spec.dtype not in ("float32", "bfloat16") or spec.shape[1] != 3:
            return False
        ov = _import_ov()
        with self._lock:
            ppp = ov.preprocess.PrePostProcessor(self._model)
            port = ppp.input(name)
            port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
            port.model().set_layout(ov.Layout("NCHW"))
            port.preprocess().convert_element_type(ov.Type.f32)
            try:
                self._model = ppp.build()
            except Exception as exc:
                raise ModelError(f"OpenVINO cannot feed {self._label} uint8 images: {reason(exc)}") from exc
            self._set_specs()
            self._compiled.clear()
        return True

    def _set_specs(self) -> None:
        self._inputs = tuple(_spec(i) for i in self._model.inputs)
        self._outputs = tuple(_spec(o) for o in self._model.outputs)
        # (name, dtype fed) per input, in the model's order (the infer request's indices)
        self._feeds = [(s.name, np.dtype(np.float32 if s.dtype == "bfloat16" else s.dtype)) for s in self._inputs]

    def _set_concurrent(self, concurrent: bool) -> None:
        self.concurrent = concurrent
        self._streams = self._callers if concurrent else 1
        # CPU threads one call runs on (live mode's size fit counts core-milliseconds)
        self.threads_per_call = max(1, (self._threads or os.cpu_count() or 1) // self._streams)

    def _log_mode(self) -> None:
        how = f"{self._streams} concurrent call(s)" if self.concurrent else "one call at a time"
        log.info("OpenVINO %s on the CPU: %s, %s thread(s) a call", self.precision, how, self.threads_per_call)

    def use_concurrent_calls(self, concurrent: bool = True) -> bool:
        """Switch the callers' calls to concurrent (or serialised) unless ``CONCURRENT_CALLS``
        forces a mode; networks compiled so far are dropped (they are compiled per mode).
        Returns whether calls are now concurrent."""
        if CONCURRENT_CALLS is not None or concurrent == self.concurrent:
            return self.concurrent
        with self._lock:
            self._set_concurrent(concurrent)
            self._compiled.clear()
        self._log_mode()
        return self.concurrent

    def _network(self, shapes: tuple[tuple[int, ...], ...]) -> _Network:
        """The network compiled for ``shapes`` (compiled now the first time); the caller holds the lock."""
        hit = self._compiled.get(shapes)
        if hit is not None:
            self._compiled.move_to_end(shapes)
            return hit
        for spec, shape in zip(self._inputs, shapes, strict=True):
            fits = len(spec.shape) == len(shape)
            if not fits or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, shape, strict=True)):
                raise ModelError(f"{self._label}: input {spec.name!r} has shape {list(spec.shape)}, got {list(shape)}")
        model = self._model.clone()
        model.reshape({port: list(shape) for port, shape in zip(model.inputs, shapes, strict=True)})
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": str(self._streams),
            # Decode and encode threads share these cores: never pin to them.
            "ENABLE_CPU_PINNING": "NO",
        }
        if self._threads:
            config["INFERENCE_NUM_THREADS"] = str(self._threads)
        try:
            compiled = self._core.compile_model(model, "CPU", config)
        except Exception as exc:
            why = str(exc).splitlines()[0]
            raise ModelError(f"OpenVINO cannot compile {self._label} for {list(shapes)}: {why}") from exc
        hit = self._compiled[shapes] = _Network(compiled)
        while len(self._compiled) > MAX_SHAPES:
            self._compiled.popitem(last=False)  # calls in flight keep theirs alive
        log.debug("OpenVINO compiled for input %s", list(shapes))
        return hit

    def input_spec(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def output_spec(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def infer(
        self, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> dict[str, NDArray[Any]]:
        try:
            arrays = [np.ascontiguousarray(inputs[name], dtype) for name, dtype in self._feeds]
        except KeyError as exc:
            takes = [n for n, _ in self._feeds]
            raise ModelError(f"{self._label}: missing input {exc.args[0]!r}; it takes {takes}") from None
        if len(inputs) != len(arrays):
            extra = sorted(set(inputs) - {n for n, _ in self._feeds})
            raise ModelError(f"{self._label}: unknown input(s) {extra}; it takes {[n for n, _ in self._feeds]}")
        shapes = tuple(a.shape for a in arrays)
        if self.concurrent:
            with self._lock:
                net = self._network(shapes)
            by_name = self._run_async(net, arrays)
        else:
            with self._lock:
                net = self._network(shapes)
                request = net.request()
                # shared, not copied into the request's own tensor (``arrays`` outlive the
                # call): one input copy less in memory and time (11 MiB at 1280x736)
                result = request.infer(dict(enumerate(arrays)), share_inputs=True)
                # copies: the request reuses its output tensors on the next call
                by_name = {name: np.array(result[i]) for i, name in net.outputs}
                net.idle.put(request)
        return pick_outputs(by_name, outputs, self._label)

    def _run_async(self, net: _Network, arrays: list[NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """One call on a request of this caller's own, through the asynchronous API.

        The inputs are shared with the request, not copied (``arrays`` outlive the call);
        a call that does not finish in ``CALL_TIMEOUT_S`` raises, so that its frames are
        masked, and its request is never used again.
        """
        request = net.request()
        reusable = True
        try:
            request.start_async(dict(enumerate(arrays)), share_inputs=True)
            if not request.wait_for(int(CALL_TIMEOUT_S * 1000)):
                reusable = False
                request.cancel()
                raise ModelError(f"{self._label}: an OpenVINO call did not finish in {CALL_TIMEOUT_S:.0f} s")
            # copies: the request reuses its output tensors on its next call
            return {name: np.array(request.get_output_tensor(i).data) for i, name in net.outputs}
        finally:
            if reusable:
                net.idle.put(request)

    def close(self) -> None:
        """Drop the compiled networks (the shared Core stays; calls in flight keep theirs)."""
        with self._lock:
            self._compiled.clear()
