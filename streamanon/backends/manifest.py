"""Engine files are build artefacts: named by what invalidates them, with a JSON manifest.

``centerface-fp16-b1x4x16-sm90-trt10.3.engine`` + ``....engine.json`` holding the ONNX
sha256, TensorRT version, compute capability, profiles (one per network input) and
precision. At load time
``check_manifest`` compares it with the running system and raises
``EngineIncompatibleError`` with the exact rebuild command.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import EngineIncompatibleError, EngineNotFoundError

REBUILD = "python build_engines.py --model {model} --precision {precision} --engine-dir {engine_dir}"


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """TensorRT optimisation profile of one network input: the shapes it accepts."""

    name: str
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class EngineManifest:
    model: str
    precision: str  # fp32 | fp16 | int8
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str  # "9.0"
    input_name: str  # the first input; its profile names the file
    profile_min: Shape
    profile_opt: Shape
    profile_max: Shape
    # further inputs (a generator's image and code): (name, min, opt, max) each
    other_profiles: tuple[tuple[str, Shape, Shape, Shape], ...] = ()
    source: str = ""  # ``build_engines.py --model`` argument when not the model name (an ONNX path)

    @classmethod
    def for_profiles(cls, profiles: list[Profile], **fields: Any) -> EngineManifest:
        first, *rest = profiles
        others = tuple((p.name, p.min, p.opt, p.max) for p in rest)
        return cls(
            input_name=first.name,
            profile_min=first.min,
            profile_opt=first.opt,
            profile_max=first.max,
            other_profiles=others,
            **fields,
        )

    def profiles(self) -> list[Profile]:
        first = Profile(self.input_name, self.profile_min, self.profile_opt, self.profile_max)
        return [first] + [Profile(n, lo, opt, hi) for n, lo, opt, hi in self.other_profiles]

    def file_name(self) -> str:
        b = f"b{self.profile_min[0]}x{self.profile_opt[0]}x{self.profile_max[0]}"
        sm = "sm" + self.compute_capability.replace(".", "")
        trt = "trt" + ".".join(self.tensorrt_version.split(".")[:2])
        return f"{self.model}-{self.precision}-{b}-{sm}-{trt}.engine"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineManifest:
        d: dict[str, Any] = json.loads(text)
        for k in ("profile_min", "profile_opt", "profile_max"):
            d[k] = tuple(d[k])
        d["other_profiles"] = tuple(
            (n, tuple(lo), tuple(opt), tuple(hi)) for n, lo, opt, hi in d.get("other_profiles", ())
        )
        return cls(**d)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_engine(engine_dir: Path, manifest: EngineManifest, engine: bytes) -> Path:
    """Write engine and manifest atomically; the manifest lands last (it marks completeness)."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    path = engine_dir / manifest.file_name()
    write_atomic(path, engine)
    write_atomic(path.with_suffix(".engine.json"), manifest.to_json().encode())
    return path


def find_engine(engine_dir: Path, model: str, precision: str, source: str | None = None) -> tuple[Path, EngineManifest]:
    """The engine for ``model``/``precision`` in ``engine_dir`` (newest if several).

    ``source``: the ``--model`` argument of the rebuild hint, when not ``model``.
    """
    candidates = sorted(engine_dir.glob(f"{model}-{precision}-*.engine"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        side = path.with_suffix(".engine.json")
        if side.is_file():
            return path, EngineManifest.from_json(side.read_text())
    raise EngineNotFoundError(
        f"no {precision} engine for {model!r} in {engine_dir}; build one with: "
        + REBUILD.format(model=source or model, precision=precision, engine_dir=engine_dir)
    )


def check_manifest(
    manifest: EngineManifest, *, onnx_sha256: str, tensorrt_version: str, compute_capability: str, engine_dir: Path
) -> None:
    """Raise ``EngineIncompatibleError`` naming every mismatch and the rebuild command."""
    problems = []
    if manifest.onnx_sha256 != onnx_sha256:
        problems.append("the ONNX model changed")
    if manifest.tensorrt_version.split(".")[:2] != tensorrt_version.split(".")[:2]:
        problems.append(f"built with TensorRT {manifest.tensorrt_version}, running {tensorrt_version}")
    if manifest.compute_capability != compute_capability:
        problems.append(f"built for sm{manifest.compute_capability}, this GPU is sm{compute_capability}")
    if problems:
        cmd = REBUILD.format(
            model=manifest.source or manifest.model, precision=manifest.precision, engine_dir=engine_dir
        )
        raise EngineIncompatibleError(
            f"engine {manifest.file_name()} is stale ({'; '.join(problems)}); rebuild with: {cmd}"
        )
