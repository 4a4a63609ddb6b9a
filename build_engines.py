#!/usr/bin/env python3
"""Build TensorRT engines from the ONNX models in the registry (engines/registry.json).

Steps, as in TensorRT's EngineBuilder sample: export the ONNX (dynamic shapes) ->
parse_onnx -> configure (precision, MIN/OPT/MAX profile) -> build -> write (atomic, with a
JSON manifest). Needs an NVIDIA GPU and ``pip install 'streamanon[tensorrt]'``; on a
machine without them, ``--export-only`` still writes the ONNX that would be compiled.

    python build_engines.py --model centerface --precision fp16 --engine-dir engines
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamanon.backends.manifest import EngineManifest, sha256_bytes, write_atomic, write_engine
from streamanon.backends.registry import model_entry
from streamanon.detect.centerface import prepare_model
from streamanon.errors import EngineError, StreamanonError

log = logging.getLogger("build_engines")


def export_onnx(model: str, engine_dir: Path) -> tuple[Path, bytes]:
    """Write the dynamic-shape ONNX that TensorRT compiles (and ORT runs)."""
    data = prepare_model(model)
    engine_dir.mkdir(parents=True, exist_ok=True)
    path = engine_dir / f"{model}.dynamic.onnx"
    write_atomic(path, data)
    log.info("exported %s (%d bytes, sha256 %s)", path, len(data), sha256_bytes(data)[:12])
    return path, data


def parse_onnx(trt: object, onnx: bytes) -> tuple[object, object, object]:
    logger = trt.Logger(trt.Logger.WARNING)  # type: ignore[attr-defined]
    builder = trt.Builder(logger)  # type: ignore[attr-defined]
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)  # type: ignore[attr-defined]
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


def build(model: str, precision: str, engine_dir: Path, profiles: dict[str, list[int]] | None = None) -> Path:
    """Build and write one engine; returns its path."""
    from streamanon.backends.tensorrt import _import_trt, compute_capability

    entry = model_entry(model)
    _, onnx = export_onnx(model, engine_dir)
    trt = _import_trt()
    cc = compute_capability()
    builder, network, _ = parse_onnx(trt, onnx)
    config = builder.create_builder_config()  # type: ignore[attr-defined]
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    prof = profiles or entry["engine_profiles"]
    name = entry["input"]["name"]
    profile = builder.create_optimization_profile()  # type: ignore[attr-defined]
    profile.set_shape(name, prof["min"], prof["opt"], prof["max"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)  # type: ignore[attr-defined]
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see the log above)")
    manifest = EngineManifest(
        model=model,
        precision=precision,
        onnx_sha256=sha256_bytes(onnx),
        tensorrt_version=trt.__version__,
        compute_capability=cc,
        input_name=name,
        profile_min=tuple(prof["min"]),
        profile_opt=tuple(prof["opt"]),
        profile_max=tuple(prof["max"]),
    )
    path = write_engine(engine_dir, manifest, bytes(serialized))
    log.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="centerface")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    p.add_argument("--engine-dir", type=Path, default=Path(__file__).resolve().parent / "engines")
    p.add_argument("--export-only", action="store_true", help="only write the dynamic ONNX (no GPU needed)")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if ns.export_only:
            export_onnx(ns.model, ns.engine_dir)
        else:
            build(ns.model, ns.precision, ns.engine_dir)
    except StreamanonError as exc:
        print(f"build_engines: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
