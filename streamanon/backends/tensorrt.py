"""TensorRT backend (extra ``[tensorrt]``; NVIDIA GPU only).

Everything that touches the GPU is imported lazily inside the functions that need it,
so this module imports on any machine. What runs here without a GPU, and is tested on
CPU: engine naming, manifest checks, the missing-dependency and no-GPU errors, and
backend selection. The inference path below is real code that needs TensorRT >= 10 and
cuda-python; it cannot run on the CPU-only CI and is never faked there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import EngineError, MissingDependencyError, ModelError, import_extra
from .base import Dim, TensorSpec, pick_outputs
from .manifest import EngineManifest, check_manifest, find_engine

log = logging.getLogger(__name__)


def tensorrt_status() -> str:
    """One line for ``streamanon doctor``."""
    try:
        trt = _import_trt()
    except MissingDependencyError:
        return "not installed (pip install 'streamanon[tensorrt]'; needs an NVIDIA GPU)"
    try:
        cc = compute_capability()
    except EngineError as exc:
        return f"TensorRT {trt.__version__} installed, but {exc}"
    return f"TensorRT {trt.__version__}, GPU sm{cc}"


def _import_trt() -> Any:
    return import_extra("tensorrt", "tensorrt")


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise MissingDependencyError.for_extra("cuda-python", "tensorrt") from exc
    return cudart


def _check(result: tuple[Any, ...]) -> Any:
    err, *rest = result
    if int(err) != 0:
        raise EngineError(f"CUDA call failed with error {int(err)}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability(device: int = 0) -> str:
    """``"major.minor"`` of ``device``; ``EngineError`` when no CUDA GPU is usable."""
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise EngineError("no CUDA GPU is available")
    props = _check(cudart.cudaGetDeviceProperties(device))
    return f"{props.major}.{props.minor}"


def usable_engine(
    engine_dir: Path, model: str, onnx_sha256: str | Callable[[], str], precision: str, source: str | None = None
) -> tuple[Path, EngineManifest]:
    """The engine TensorRT would load, checked without loading it.

    ``onnx_sha256``: the model's hash, or a function that computes it, called only once
    TensorRT, a GPU and an engine file are there (hashing a prepared model costs the
    ``onnx`` import on machines that have none of them). ``source``: how
    ``build_engines.py --model`` names the model in rebuild hints (an ONNX path for a
    model outside the registry); default ``model``.

    Raises:
        MissingDependencyError: TensorRT or cuda-python is not installed.
        EngineError: no GPU, no engine, or a stale one (the message has the rebuild command).
    """
    trt = _import_trt()
    _cudart()
    path, manifest = find_engine(engine_dir, model, precision, source=source)
    check_manifest(
        manifest,
        onnx_sha256=onnx_sha256 if isinstance(onnx_sha256, str) else onnx_sha256(),
        tensorrt_version=trt.__version__,
        compute_capability=compute_capability(),
        engine_dir=engine_dir,
    )
    return path, manifest


def profile_batch(manifest: EngineManifest) -> tuple[int, int]:
    """The batch sizes (first dimension) every input's optimisation profile accepts: ``(min, max)``."""
    profiles = manifest.profiles()
    lo = max(int(p.min[0]) for p in profiles) if profiles else 1
    hi = min(int(p.max[0]) for p in profiles) if profiles else 1
    return max(1, lo), max(1, lo, hi)


def run_in_batches(
    call: Callable[[dict[str, NDArray[Any]]], dict[str, NDArray[Any]]],
    inputs: Mapping[str, NDArray[Any]],
    min_batch: int,
    max_batch: int,
) -> dict[str, NDArray[Any]]:
    """``call`` on batches the engine's profile accepts, results joined in order.

    A batch larger than ``max_batch`` (frames of many feeds, ``streamanon streams``) runs
    as chunks of ``max_batch``; one smaller than ``min_batch`` is padded by repeating its
    last item and the padding's results are dropped. Every input's first axis is the batch.
    """
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    sizes = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ModelError(f"inputs must share one batch (first) dimension, got {sorted(sizes)}")
    n = sizes.pop()
    if min_batch <= n <= max_batch:
        return call(dict(arrays))
    parts: list[dict[str, NDArray[Any]]] = []
    for start in range(0, n, max_batch):
        chunk = {k: a[start : start + max_batch] for k, a in arrays.items()}
        m = next(iter(chunk.values())).shape[0]
        if m < min_batch:
            chunk = {k: np.concatenate([a, np.repeat(a[-1:], min_batch - m, axis=0)]) for k, a in chunk.items()}
        parts.append({k: v[:m] for k, v in call(chunk).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class TensorRTBackend:
    """Run a serialized engine (``backends.base.Backend``); one call at a time.

    A call's batch is fitted to the engine's optimisation profile (``run_in_batches``):
    ``max_batch`` (the profile's, 16 for the registry's CenterFace profile) is the most
    frames one execution takes; the shared detector of ``streamanon streams`` forms its
    batches up to it.

    Args:
        engine_dir: folder with ``*.engine`` files and their ``.engine.json`` manifests.
        model: the name engines are built under (registry name, or an ONNX file's stem).
        precision: ``fp16`` (default) or ``fp32``.
        onnx_sha256: sha256 of the ONNX the engine must have been built from.
        source: how ``build_engines.py --model`` names the model in rebuild hints.
    """

    def __init__(
        self, engine_dir: Path, model: str, onnx_sha256: str, precision: str = "fp16", source: str | None = None
    ) -> None:
        trt, cudart = _import_trt(), _cudart()
        path, manifest = usable_engine(engine_dir, model, onnx_sha256, precision, source)
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, bytes)
        self.manifest = manifest
        self.min_batch, self.max_batch = profile_batch(manifest)
        self.providers = [f"TensorRT {precision}"]
        self.threads_per_call = 1
        # name -> (is input, NumPy dtype), in the engine's order; asked once, not per call
        self._io: dict[str, tuple[bool, np.dtype[Any]]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io[name] = (is_input, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
        self._input_names = [n for n, (i, _) in self._io.items() if i]
        self._output_names = [n for n, (i, _) in self._io.items() if not i]
        self._label = path.name
        log.info("TensorRT engine %s loaded", path.name)

    def _spec(self, name: str) -> TensorSpec:
        shape: tuple[Dim, ...] = tuple(int(d) if d >= 0 else None for d in self.engine.get_tensor_shape(name))
        return TensorSpec(name, shape, self._io[name][1].name)

    def input_spec(self) -> tuple[TensorSpec, ...]:
        return tuple(self._spec(n) for n in self._input_names)

    def output_spec(self) -> tuple[TensorSpec, ...]:
        return tuple(self._spec(n) for n in self._output_names)

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return int(ptr)

    def infer(
        self, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> dict[str, NDArray[Any]]:
        if sorted(inputs) != sorted(self._input_names):
            raise ModelError(f"{self._label}: inputs {sorted(inputs)} given, it takes {self._input_names}")
        results = run_in_batches(self._infer_once, inputs, self.min_batch, self.max_batch)
        return pick_outputs(results, outputs, self._label)

    def _infer_once(self, inputs: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """One execution of a batch within the profile: every output, on the host."""
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        staged = []  # host arrays must live until the stream is synchronised
        for name in self._input_names:
            arr = np.ascontiguousarray(inputs[name], self._io[name][1])
            staged.append(arr)
            self.context.set_input_shape(name, arr.shape)
            ptr = self._device(name, arr.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        results: dict[str, NDArray[Any]] = {}
        for name in self._output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, self._io[name][1])
            self.context.set_tensor_address(name, self._device(name, host.nbytes))
            results[name] = host
        if not self.context.execute_async_v3(self.stream):
            raise EngineError("TensorRT execution failed")
        for name, host in results.items():
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return results

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
