#!/usr/bin/env python3
"""Build TensorRT engines from ONNX models: any ONNX model of the registry
(engines/registry.json) or an ONNX file.

Steps, as in TensorRT's EngineBuilder sample: export the ONNX (the registry's preparation
hook applied, e.g. CenterFace's dynamic shapes) -> choose a MIN/OPT/MAX profile per input
-> parse_onnx -> configure (precision, profiles) -> build -> write (atomic, with a JSON
manifest). Profiles come from ``--min-shapes/--opt-shapes/--max-shapes`` (trtexec's
``name:1x3x32x32`` form), else the registry entry's ``engine_profiles``, else the input's
own shape when it is fixed. Needs an NVIDIA GPU and ``pip install 'streamanon[tensorrt]'``;
on a machine without them, ``--export-only`` still writes the ONNX that would be compiled.

    python build_engines.py --model centerface --precision fp16 --engine-dir engines
    python build_engines.py --model exports/generator.onnx --min-shapes img:1x3x256x256 \\
        --opt-shapes img:4x3x256x256 --max-shapes img:8x3x256x256
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamanon.backends.base import Dim, TensorSpec
from streamanon.backends.loader import OnnxModel, onnx_model
from streamanon.backends.manifest import EngineManifest, Profile, Shape, sha256_bytes, write_atomic, write_engine
from streamanon.errors import ConfigError, EngineError, MissingDependencyError, ModelError, StreamanonError

log = logging.getLogger("build_engines")
SHAPE_FLAGS = ("--min-shapes", "--opt-shapes", "--max-shapes")


def export_onnx(model: str, engine_dir: Path) -> tuple[Path, OnnxModel]:
    """Write the ONNX that TensorRT compiles (and ORT/OpenVINO run): ``NAME.export.onnx``."""
    m = onnx_model(model)
    engine_dir.mkdir(parents=True, exist_ok=True)
    path = engine_dir / f"{m.name}.export.onnx"
    write_atomic(path, m.data)
    log.info("exported %s (%d bytes, sha256 %s)", path, len(m.data), m.sha256()[:12])
    return path, m


def onnx_inputs(data: bytes) -> list[TensorSpec]:
    """The graph inputs a caller feeds (initializers listed as inputs are not), from the ONNX."""
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:  # onnx is a core dependency; this guards broken installs
        raise MissingDependencyError.for_extra("onnx", "core") from exc
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"not an ONNX model: {exc}") from exc
    inits = {i.name for i in proto.graph.initializer}
    specs = []
    for value in proto.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims: tuple[Dim, ...] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
        )
        specs.append(TensorSpec(value.name, dims, helper.tensor_dtype_to_np_dtype(tensor.elem_type).name))
    return specs


def parse_shapes(text: str, flag: str) -> dict[str, Shape]:
    """``"a:1x3x32x32,b:1x8"`` -> ``{"a": (1, 3, 32, 32), "b": (1, 8)}`` (trtexec's form)."""
    shapes: dict[str, Shape] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise ConfigError(f"invalid {flag} {item!r}: expected NAME:DxD... with positive sizes, e.g. x:1x3x224x224")
        shapes[name] = shape
    return shapes


def _registry_profiles(entry: Mapping[str, Any] | None, first_input: str) -> dict[str, dict[str, Shape]]:
    """``engine_profiles`` of a registry entry as ``{input: {min, opt, max}}``."""
    raw = (entry or {}).get("engine_profiles")
    if not raw:
        return {}
    if "min" in raw:  # one profile: the entry's input (else the first)
        name = (entry or {}).get("input", {}).get("name", first_input)
        raw = {name: raw}
    return {name: {k: tuple(p[k]) for k in ("min", "opt", "max") if k in p} for name, p in raw.items()}


def choose_profiles(
    inputs: Sequence[TensorSpec],
    entry: Mapping[str, Any] | None = None,
    asked: Mapping[str, Mapping[str, Shape]] | None = None,
    model: str = "the model",
) -> list[Profile]:
    """One profile per input: ``asked`` (the command line), else the registry, else its fixed shape.

    Raises:
        ConfigError: a shape for an input the model lacks, a dynamic input without
            shapes, or shapes that contradict the model (rank, fixed sizes, min <= opt <= max).
    """
    if not inputs:
        raise ModelError(f"{model} has no inputs to build a profile for")
    asked = asked or {}
    names = [s.name for s in inputs]
    unknown = sorted(set(asked) - set(names))
    if unknown:
        raise ConfigError(f"{model} has no input(s) {', '.join(unknown)}; its inputs: {', '.join(names)}")
    registry = _registry_profiles(entry, names[0])
    profiles = []
    for spec in inputs:
        given = asked.get(spec.name) or registry.get(spec.name)
        fixed = spec.static_shape()
        if given is None:
            if fixed is None:
                raise ConfigError(
                    f"input {spec.name!r} of {model} has dynamic shape {list(spec.shape)}; give its shapes with "
                    f"{'/'.join(SHAPE_FLAGS)} {spec.name}:DxDx... or engine_profiles in engines/registry.json"
                )
            given = {"min": fixed, "opt": fixed, "max": fixed}
        missing = [k for k in ("min", "opt", "max") if k not in given]
        if missing:
            together = ", ".join(SHAPE_FLAGS)
            raise ConfigError(
                f"input {spec.name!r} of {model}: no {'/'.join(missing)} shape given ({together} go together)"
            )
        lo, opt, hi = given["min"], given["opt"], given["max"]
        for shape in (lo, opt, hi):
            fits = len(shape) == len(spec.shape)
            if not fits or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, shape, strict=True)):
                raise ConfigError(
                    f"input {spec.name!r} of {model} has shape {list(spec.shape)}; "
                    f"profile shape {list(shape)} does not fit it"
                )
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            got = f"{list(lo)}, {list(opt)}, {list(hi)}"
            raise ConfigError(f"input {spec.name!r} of {model}: profile needs min <= opt <= max, got {got}")
        profiles.append(Profile(spec.name, tuple(lo), tuple(opt), tuple(hi)))
    return profiles


def parse_onnx(trt: Any, onnx: bytes) -> tuple[Any, Any, Any]:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse the ONNX model: {errors}")
    for i in range(network.num_inputs):
        t = network.get_input(i)
        log.info("input  %s %s %s", t.name, t.shape, t.dtype)
    for i in range(network.num_outputs):
        t = network.get_output(i)
        log.info("output %s %s %s", t.name, t.shape, t.dtype)
    return builder, network, logger


def build(
    model: str, precision: str, engine_dir: Path, shapes: Mapping[str, Mapping[str, Shape]] | None = None
) -> Path:
    """Build and write one engine; returns its path.

    Everything that needs no GPU (export, profiles) runs first, so its errors show on any machine.
    """
    _, m = export_onnx(model, engine_dir)
    profiles = choose_profiles(onnx_inputs(m.data), m.entry, shapes, m.source)
    from streamanon.backends.tensorrt import _import_trt, compute_capability

    trt = _import_trt()
    cc = compute_capability()
    builder, network, _ = parse_onnx(trt, m.data)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = {t.name for t in (network.get_input(i) for i in range(network.num_inputs)) if any(d < 0 for d in t.shape)}
    if dynamic:  # a network without dynamic inputs takes no profile
        profile = builder.create_optimization_profile()
        for p in profiles:
            if p.name in dynamic:
                profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see the log above)")
    manifest = EngineManifest.for_profiles(
        profiles,
        model=m.name,
        precision=precision,
        onnx_sha256=sha256_bytes(m.data),
        tensorrt_version=trt.__version__,
        compute_capability=cc,
        source="" if m.source == m.name else m.source,
    )
    path = write_engine(engine_dir, manifest, bytes(serialized))
    log.info("wrote %s", path)
    return path


def asked_shapes(ns: argparse.Namespace) -> dict[str, dict[str, Shape]]:
    """``--min/opt/max-shapes`` as ``{input: {min, opt, max}}``."""
    out: dict[str, dict[str, Shape]] = {}
    for key, flag in zip(("min", "opt", "max"), SHAPE_FLAGS, strict=True):
        for name, shape in parse_shapes(getattr(ns, f"{key}_shapes") or "", flag).items():
            out.setdefault(name, {})[key] = shape
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="centerface", help="registry name (engines/registry.json) or path of an ONNX file"
    )
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    p.add_argument("--engine-dir", type=Path, default=Path(__file__).resolve().parent / "engines")
    p.add_argument(
        "--export-only", action="store_true", help="only write the ONNX that would be compiled (no GPU needed)"
    )
    for flag in SHAPE_FLAGS:
        p.add_argument(
            flag, metavar="NAME:DxD...[,...]", help=f"{flag[2:5]} shape of each dynamic input (trtexec's form)"
        )
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        shapes = asked_shapes(ns)
        if ns.export_only:
            _, m = export_onnx(ns.model, ns.engine_dir)
            try:
                for prof in choose_profiles(onnx_inputs(m.data), m.entry, shapes, m.source):
                    log.info(
                        "profile %s: min %s opt %s max %s",
                        prof.name,
                        *(list(s) for s in (prof.min, prof.opt, prof.max)),
                    )
            except ConfigError as exc:  # the export is still what a build elsewhere compiles
                log.warning("a build would need profiles: %s", exc)
        else:
            build(ns.model, ns.precision, ns.engine_dir, shapes)
    except StreamanonError as exc:
        print(f"build_engines: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
