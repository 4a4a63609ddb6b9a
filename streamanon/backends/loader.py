"""Load any ONNX model, from the registry or a file, on the backend ``EngineConfig`` picks.

    backend, choice = load_backend("centerface", EngineConfig())
    backend, choice = load_backend("exports/generator.onnx", EngineConfig(backend="openvino"))

Selection is ``backends/select.py``'s, the same for every model: TensorRT where the
package, a GPU and a matching engine (``build_engines.py --model NAME``) are there, else
ONNX Runtime on a GPU provider, else OpenVINO, else ONNX Runtime on the CPU.

A registry entry may name a preparation hook (``"prepare": "module:function"``, a
function ``name -> ONNX bytes`` inside streamanon) that rewrites the file before any
runtime sees it; CenterFace's makes its fixed input shape dynamic. Other models run as
shipped. The prepared bytes are also what a TensorRT engine is checked against. An entry's
``prepare_skip`` lists the backends that run the file as shipped: OpenVINO reshapes every
network to each call's input shape itself, and skipping CenterFace's hook there spares the
``onnx`` import (~15 MiB of RSS) with the same outputs (tests/backends).
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from .base import Backend, EngineConfig
from .manifest import sha256_bytes
from .onnxruntime import OrtBackend
from .openvino import OpenVinoBackend
from .registry import model_entry, resolve_model
from .select import EngineChoice, choose_engine
from .tensorrt import TensorRTBackend

log = logging.getLogger(__name__)


#: layout letters -> the names registry entries give dynamic axes
_AXIS_NAMES = {"N": "batch", "C": "channels", "H": "height", "W": "width"}


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX model ready for a runtime."""

    name: str  # engine files are named after it: the registry name, or a file's stem
    raw: bytes  # the file as shipped
    origin: str  # the file it came from, for error messages
    source: str  # how ``build_engines.py --model`` names it: the registry name or the path
    entry: dict[str, Any] | None  # the registry entry; None for a file given by path
    prepare: Callable[[str], bytes] | None = field(default=None, compare=False)  # the entry's hook

    @functools.cached_property
    def data(self) -> bytes:
        """What the runtimes load: ``raw`` after the registry's preparation hook, if any."""
        return self.prepare(self.name) if self.prepare else self.raw

    def skips_prepare(self, backend: str) -> bool:
        """Whether ``backend`` loads the file as shipped (the entry's ``prepare_skip``)."""
        return self.prepare is not None and backend in (self.entry or {}).get("prepare_skip", ())

    def dynamic_axes(self) -> dict[str, list[int]]:
        """The entry's input's ``dynamic_axes`` as axis indices of its ``layout`` (e.g. NCHW)."""
        spec = (self.entry or {}).get("input") or {}
        layout, names = spec.get("layout", ""), spec.get("dynamic_axes", ())
        axes = [i for i, ch in enumerate(layout) if _AXIS_NAMES.get(ch) in names]
        return {spec["name"]: axes} if axes and "name" in spec else {}

    def sha256(self) -> str:
        """Of ``data``: what a TensorRT engine's manifest must name."""
        return sha256_bytes(self.data)


def is_path(model: str | Path) -> bool:
    """Whether ``model`` names a file rather than a registry entry."""
    return isinstance(model, Path) or model.endswith(".onnx") or "/" in model or "\\" in model


def _hook(name: str, spec: str) -> Callable[[str], bytes]:
    module, _, attr = spec.partition(":")
    if not (module == "streamanon" or module.startswith("streamanon.")) or not attr:
        raise ModelError(f"model {name!r}: preparation hook {spec!r} must be 'streamanon.module:function'")
    fn = getattr(importlib.import_module(module), attr, None)
    if not callable(fn):
        raise ModelError(f"model {name!r}: preparation hook {spec!r} does not exist")
    hook: Callable[[str], bytes] = fn
    return hook


def onnx_model(model: str | Path) -> OnnxModel:
    """The ONNX of a registry model (checksum verified, prepared) or of a file.

    Raises:
        ConfigError: an unknown registry name, or an entry that is not an ONNX model.
        ModelError: the file is missing or its checksum differs from the registry's.
    """
    if is_path(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"ONNX model {path} not found")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name.removesuffix(".onnx")) or "model"
        return OnnxModel(name, path.read_bytes(), str(path), str(path.resolve()), None)
    name = str(model)
    entry = model_entry(name)
    if entry.get("format") != "onnx":
        raise ConfigError(f"model {name!r} is a {entry.get('format')} model; the inference backends run ONNX models")
    path = resolve_model(name)
    prepare = entry.get("prepare")
    return OnnxModel(name, path.read_bytes(), str(path), name, entry, _hook(name, prepare) if prepare else None)


def open_backend(model: OnnxModel, choice: EngineChoice, callers: int = 1, log_choice: bool = False) -> Backend:
    """The backend object for a resolved ``choice``.

    ``callers``: concurrent callers to expect (OpenVINO pools their threads for its one
    call at a time).
    """
    c = choice.config
    log.log(logging.INFO if log_choice else logging.DEBUG, "inference for %s: %s", model.name, choice)
    if c.backend == "tensorrt":
        return TensorRTBackend(Path(c.engine_dir), model.name, model.sha256(), c.precision, model.source)
    if c.backend == "openvino":
        if model.skips_prepare("openvino"):  # OpenVINO frees the input's axes itself: no onnx import
            return OpenVinoBackend(
                model.raw, c.precision, c.threads, callers, label=model.origin, dynamic_axes=model.dynamic_axes()
            )
        return OpenVinoBackend(model.data, c.precision, c.threads, callers, label=model.origin)
    return OrtBackend(model.data, c.providers, c.threads, label=model.origin)


def resolve_engine(model: OnnxModel, engine: EngineConfig) -> EngineChoice:
    """``engine`` with ``auto`` resolved for ``model`` (no runtime is loaded)."""
    return choose_engine(engine, model.sha256, model.name, model.source)


def load_backend(
    model: str | Path, engine: EngineConfig | None = None, callers: int = 1
) -> tuple[Backend, EngineChoice]:
    """Model ``model`` (registry name or ONNX path) on the backend ``engine`` asks for.

    A named backend that cannot be used fails loudly (missing package, no GPU, no or
    stale engine, a precision it cannot run); ``auto`` falls back as documented in
    ``backends/select.py`` and logs why.
    """
    engine = engine or EngineConfig()
    m = onnx_model(model)
    choice = resolve_engine(m, engine)
    return open_backend(m, choice, callers, log_choice=engine.backend == "auto"), choice
