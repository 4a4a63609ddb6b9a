"""What every inference backend offers, and the settings that pick one.

One contract for every ONNX model streamanon runs (detector, generator, recogniser,
landmark network) on every runtime (ONNX Runtime, OpenVINO, TensorRT): the caller names
its inputs, gets its outputs by name, and can ask the backend what it expects. The
settings that choose the runtime (``EngineConfig``) are separate from any model's own
settings, so a second model in a run can be placed on a different device than the detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from numpy.typing import NDArray

from ..config import EngineConfig as EngineConfig  # defined in config: PipelineConfig.engine
from ..errors import ModelError

# A dimension: a fixed size, the symbolic name of a dynamic one, or None (dynamic, unnamed).
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as the backend sees it.

    ``dtype`` is the NumPy name (``float32``, ``int64``; ``bfloat16`` has none in NumPy),
    the same on every runtime, so specs of two backends compare equal where they agree.
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @property
    def dynamic(self) -> bool:
        """Whether some dimension is decided per call."""
        return any(not isinstance(d, int) for d in self.shape)

    def static_shape(self) -> tuple[int, ...] | None:
        """The shape if every dimension is fixed, else None."""
        return None if self.dynamic else tuple(int(d) for d in self.shape if isinstance(d, int))


class Backend(Protocol):
    """A loaded model on one runtime.

    ``infer`` takes every input by name and returns outputs by name (all of them, or the
    ones named in ``outputs``, which a runtime may then skip computing). Inputs should
    have the dtype of ``input_spec()``. Implementations may be called from several threads.
    """

    @property
    def providers(self) -> list[str]:
        """What runs the model, for logs and reports."""
        ...

    @property
    def threads_per_call(self) -> int:
        """CPU threads one call runs on (live mode's size fit counts core-milliseconds)."""
        ...

    def input_spec(self) -> tuple[TensorSpec, ...]: ...

    def output_spec(self) -> tuple[TensorSpec, ...]: ...

    def infer(
        self, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> dict[str, NDArray[Any]]: ...

    def close(self) -> None:
        """Release device memory now rather than at garbage collection."""
        ...


def pick_outputs(
    results: dict[str, NDArray[Any]], outputs: Sequence[str] | None, label: str
) -> dict[str, NDArray[Any]]:
    """``results`` of every output, narrowed to ``outputs`` (None or empty: all of them).

    Raises:
        ModelError: an output the model does not have.
    """
    if not outputs:
        return results
    try:
        return {n: results[n] for n in outputs}
    except KeyError as exc:
        raise ModelError(f"{label}: no output {exc.args[0]!r}; it has {list(results)}") from None


def take_uint8_images(backend: Backend, name: str) -> bool:
    """Ask ``backend`` to take input ``name`` (float NCHW image) as uint8 NHWC images.

    A runtime that converts inside its network (OpenVINO) saves the caller a float copy
    of every frame; the others (ONNX Runtime, TensorRT, test fakes) are fed float NCHW
    as before. Returns whether ``backend`` now takes uint8 NHWC for ``name``.
    """
    take = getattr(backend, "take_uint8_images", None)
    return bool(take is not None and take(name))
