"""TensorRT backend (extra ``[tensorrt]``; NVIDIA GPU only).

Everything that touches the GPU is imported lazily inside the functions that need it,
so this module imports on any machine. What runs here without a GPU, and is tested on
CPU: engine naming, manifest checks, the missing-dependency and no-GPU errors, and
backend selection. The inference path below is real code that needs TensorRT >= 10 and
cuda-python; it cannot run on the CPU-only CI and is never faked there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import EngineError, MissingDependencyError, import_extra
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


def usable_engine(engine_dir: Path, model: str, onnx_sha256: str, precision: str) -> tuple[Path, EngineManifest]:
    """The engine TensorRT would load, checked without loading it.

    Raises:
        MissingDependencyError: TensorRT or cuda-python is not installed.
        EngineError: no GPU, no engine, or a stale one (the message has the rebuild command).
    """
    trt = _import_trt()
    _cudart()
    path, manifest = find_engine(engine_dir, model, precision)
    check_manifest(
        manifest,
        onnx_sha256=onnx_sha256,
        tensorrt_version=trt.__version__,
        compute_capability=compute_capability(),
        engine_dir=engine_dir,
    )
    return path, manifest


class TensorRTBackend:
    """Run a serialized engine with the same ``infer(dict) -> list`` contract as ORT.

    Args:
        engine_dir: folder with ``*.engine`` files and their ``.engine.json`` manifests.
        model: registry name (``centerface``).
        precision: ``fp16`` (default) or ``fp32``.
        onnx_sha256: sha256 of the ONNX the engine must have been built from.
    """

    def __init__(self, engine_dir: Path, model: str, onnx_sha256: str, precision: str = "fp16") -> None:
        trt, cudart = _import_trt(), _cudart()
        path, manifest = usable_engine(engine_dir, model, onnx_sha256, precision)
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, bytes)
        self.manifest = manifest
        log.info("TensorRT engine %s loaded", path.name)

    def _io(self) -> list[tuple[str, bool]]:
        trt = self._trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [(n, self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT) for n in names]

    def input_spec(self) -> list[tuple[str, list[int], str]]:
        return [(n, list(self.engine.get_tensor_shape(n)), str(self.engine.get_tensor_dtype(n))) for n, i in self._io() if i]

    def output_spec(self) -> list[tuple[str, list[int], str]]:
        return [(n, list(self.engine.get_tensor_shape(n)), str(self.engine.get_tensor_dtype(n))) for n, i in self._io() if not i]

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return int(ptr)

    def infer(self, inputs: dict[str, NDArray[np.float32]], outputs: Sequence[str] | None = None) -> list[NDArray[Any]]:
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, arr in inputs.items():
            arr = np.ascontiguousarray(arr, np.float32)
            self.context.set_input_shape(name, arr.shape)
            ptr = self._device(name, arr.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        results: dict[str, NDArray[Any]] = {}
        for name, is_input in self._io():
            if is_input:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, np.float32)
            self.context.set_tensor_address(name, self._device(name, host.nbytes))
            results[name] = host
        if not self.context.execute_async_v3(self.stream):
            raise EngineError("TensorRT execution failed")
        for name, host in results.items():
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        names = list(outputs) if outputs else list(results)
        return [results[n] for n in names]

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
