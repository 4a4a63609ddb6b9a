"""The inference layer for every model: a small ONNX network built here (not CenterFace)
through the generic loader on ONNX Runtime and OpenVINO, selection, the registry's model
sources and checks, and ``build_engines.py`` for any model."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from streamanon.backends import loader, registry, select, tensorrt
from streamanon.backends import openvino as ovb
from streamanon.backends.base import EngineConfig, TensorSpec
from streamanon.backends.loader import load_backend, onnx_model, resolve_engine
from streamanon.backends.manifest import EngineManifest, Profile, find_engine
from streamanon.backends.onnxruntime import OrtBackend
from streamanon.config import DetectConfig
from streamanon.detect.centerface import prepare_model
from streamanon.errors import ConfigError, EngineNotFoundError, MissingDependencyError, ModelError

ROOT = Path(__file__).resolve().parents[2]
HAS_OV = ovb.openvino_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino is not installed")
RNG = np.random.default_rng(7)
WEIGHT = RNG.normal(size=(4, 3, 1, 1)).astype(np.float32)  # 1x1 conv, 3 -> 4 channels
PROJ = RNG.normal(size=(8, 5)).astype(np.float32)


def tiny_model(path: Path, *, static_batch: int | None = None) -> Path:
    """``y = relu(conv1x1(x)) + bias``, ``pooled = mean_hw(y)``, ``label = argmax(pooled)``;
    ``z = v @ PROJ``. Two inputs of which one has a fixed shape, three output dtypes."""
    from onnx import TensorProto, helper, numpy_helper, save

    batch: int | str = static_batch or "N"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, "H", "W"])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 8])
    bias = helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 4, 1, 1])
    outs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, "H", "W"]),
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [batch, 4]),
        helper.make_tensor_value_info("label", TensorProto.INT64, [batch]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "bias"], ["y"]),
        helper.make_node("ReduceMean", ["y"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("ArgMax", ["pooled"], ["label"], axis=1, keepdims=0),
        helper.make_node("MatMul", ["v", "proj"], ["z"]),
    ]
    inits = [numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(PROJ, "proj")]
    graph = helper.make_graph(nodes, "tiny", [x, v, bias], outs, inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def feeds(n: int, h: int, w: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n * 1000 + h + w)
    return {
        "x": rng.normal(size=(n, 3, h, w)).astype(np.float32),
        "v": rng.normal(size=(2, 8)).astype(np.float32),
        "bias": rng.normal(size=(1, 4, 1, 1)).astype(np.float32),
    }


def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tiny model in NumPy: what every backend must compute."""
    y = np.maximum(np.einsum("oc,nchw->nohw", WEIGHT[:, :, 0, 0], inputs["x"]), 0) + inputs["bias"]
    pooled = y.mean(axis=(2, 3))
    return {"y": y, "pooled": pooled, "label": pooled.argmax(axis=1), "z": inputs["v"] @ PROJ}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "tiny.onnx")


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A ``"kind": "file"`` registry entry for the tiny model under a temporary engines/."""
    (tmp_path / "models").mkdir()
    path = tiny_model(tmp_path / "models" / "tiny.onnx")
    entry = {
        "task": "test",
        "source": {"kind": "file", "path": "models/tiny.onnx"},
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "license": "test",
        "format": "onnx",
        "input": {"name": "x", "layout": "NCHW"},
    }
    monkeypatch.setattr(registry, "FILE_ROOTS", (tmp_path,))
    monkeypatch.setitem(registry.load_registry()["models"], "tiny-gen", entry)
    registry.resolve_model.cache_clear()
    yield entry
    registry.resolve_model.cache_clear()


def build_engines() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_engines", ROOT / "build_engines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- one contract on ONNX Runtime and OpenVINO -----------------------------------------
def test_onnxruntime_runs_any_model_by_name(tiny: Path) -> None:
    backend, choice = load_backend(tiny, EngineConfig(backend="onnxruntime", threads=1))
    assert (choice.config.backend, choice.config.precision, choice.on_cpu) == ("onnxruntime", "fp32", True)
    assert backend.input_spec() == (
        TensorSpec("x", ("N", 3, "H", "W"), "float32"),
        TensorSpec("v", (2, 8), "float32"),
        TensorSpec("bias", (1, 4, 1, 1), "float32"),
    )
    assert [(s.name, s.dtype) for s in backend.output_spec()] == [
        ("y", "float32"),
        ("pooled", "float32"),
        ("label", "int64"),
        ("z", "float32"),
    ]
    inputs = feeds(2, 8, 12)
    out, ref = backend.infer(inputs), reference(inputs)
    assert list(out) == ["y", "pooled", "label", "z"]
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)
    assert list(backend.infer(inputs, ["z", "label"])) == ["z", "label"]  # only what is asked, in that order


@needs_ov
def test_openvino_agrees_with_onnxruntime_on_any_model(tiny: Path) -> None:
    ort, _ = load_backend(tiny, EngineConfig(backend="onnxruntime", threads=1))
    ov, choice = load_backend(tiny, EngineConfig(backend="openvino", precision="fp32", threads=1))
    assert (choice.config.backend, choice.config.precision) == ("openvino", "fp32")
    # same names, dtypes and fixed sizes (OpenVINO keeps no names for dynamic dimensions)
    for sa, sb in zip(ort.input_spec() + ort.output_spec(), ov.input_spec() + ov.output_spec(), strict=True):
        assert (sa.name, sa.dtype, sa.dynamic) == (sb.name, sb.dtype, sb.dynamic)
        assert [d if isinstance(d, int) else None for d in sa.shape] == list(sb.shape)
    for n, h, w in ((1, 8, 8), (3, 16, 24), (1, 8, 8)):  # a new shape compiles; a seen one is reused
        inputs = feeds(n, h, w)
        a, b, ref = ort.infer(inputs), ov.infer(inputs), reference(inputs)
        assert list(a) == list(b)
        for name in ref:
            assert a[name].dtype == b[name].dtype == ref[name].dtype
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(b[name], ref[name], rtol=1e-4, atol=1e-4)
    assert list(ov.infer(feeds(1, 8, 8), ["label"])) == ["label"]


@needs_ov
def test_openvino_refuses_shapes_and_inputs_the_model_does_not_take(tiny: Path) -> None:
    ov, _ = load_backend(tiny, EngineConfig(backend="openvino", precision="fp32", threads=1))
    bad = feeds(1, 8, 8) | {"v": np.zeros((3, 8), np.float32)}
    with pytest.raises(ModelError, match=r"tiny.onnx: input 'v' has shape \[2, 8\], got \[3, 8\]"):
        ov.infer(bad)
    with pytest.raises(ModelError, match="missing input 'bias'"):
        ov.infer({k: a for k, a in feeds(1, 8, 8).items() if k != "bias"})
    with pytest.raises(ModelError, match=r"unknown input\(s\) \['extra'\]"):
        ov.infer(feeds(1, 8, 8) | {"extra": np.zeros(1, np.float32)})
    with pytest.raises(ModelError, match="no output 'nope'"):
        ov.infer(feeds(1, 8, 8), ["nope"])


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=needs_ov)])
def test_a_corrupt_onnx_is_a_model_error_naming_the_file(tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(tiny_model(tmp_path / "ok.onnx").read_bytes()[:100])
    with pytest.raises(ModelError, match=r"cannot (load|read) .*truncated\.onnx"):
        load_backend(bad, EngineConfig(backend=backend, precision="fp32"))  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"ONNX model .*missing\.onnx not found"):
        load_backend(tmp_path / "missing.onnx", EngineConfig(backend=backend))  # type: ignore[arg-type]


# -- selection: the detector's rules for every model -----------------------------------
def test_selection_for_any_model_follows_the_detector_rules(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = onnx_model(tiny)
    assert (m.name, m.source, m.entry) == ("tiny", str(tiny.resolve()), None)
    auto = resolve_engine(m, EngineConfig(engine_dir=str(tmp_path)))
    assert "TensorRT not used" in auto.reason and auto.on_cpu
    assert auto.config.backend == ("openvino" if HAS_OV else "onnxruntime")
    with pytest.raises(ConfigError, match="ONNX Runtime runs the model in fp32"):
        resolve_engine(m, EngineConfig(backend="onnxruntime", precision="bf16"))
    with pytest.raises(ConfigError, match="TensorRT engines are built in fp16 or fp32"):
        resolve_engine(m, EngineConfig(backend="tensorrt", precision="bf16"))
    if not HAS_TRT:
        with pytest.raises(MissingDependencyError, match=r"streamanon\[tensorrt\]"):
            load_backend(tiny, EngineConfig(backend="tensorrt", engine_dir=str(tmp_path)))
    monkeypatch.setattr(ovb, "openvino_available", lambda: False)
    assert resolve_engine(m, EngineConfig()).config.backend == "onnxruntime"
    with pytest.raises(MissingDependencyError, match=r"streamanon\[openvino\]"):
        resolve_engine(m, EngineConfig(precision="bf16"))
    monkeypatch.setattr(select, "_gpu_providers", lambda: ["CUDAExecutionProvider"])
    gpu = resolve_engine(m, EngineConfig())
    assert (gpu.config.backend, gpu.config.providers, gpu.on_cpu) == ("onnxruntime", ("auto",), False)
    # TensorRT first, checked against this model's own name, hash and rebuild command
    seen: list[tuple[Any, ...]] = []

    def usable(*args: Any) -> tuple[Path, None]:
        seen.append(args)
        return tmp_path / "x.engine", None

    monkeypatch.setattr(tensorrt, "usable_engine", usable)
    trt = resolve_engine(m, EngineConfig(engine_dir=str(tmp_path)))
    assert (trt.config.backend, trt.config.precision, trt.on_cpu) == ("tensorrt", "fp16", False)
    assert [(a[0], a[1], a[2](), *a[3:]) for a in seen] == [(tmp_path, "tiny", m.sha256(), "fp16", str(tiny.resolve()))]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"backend": "onnxruntime"},
        {"backend": "onnxruntime", "providers": ("CUDAExecutionProvider", "CPUExecutionProvider")},
        {"precision": "fp16"},
        {"providers": ("auto",), "threads": 3},
        pytest.param({"backend": "openvino", "precision": "fp32"}, marks=needs_ov),
    ],
)
def test_detector_choice_is_the_engine_choice_of_its_config(settings: dict[str, Any], tmp_path: Path) -> None:
    detect = DetectConfig(engine_dir=str(tmp_path), **settings)
    engine = EngineConfig.from_detect(detect)
    assert (engine.backend, engine.precision, engine.providers, engine.threads, engine.engine_dir) == (
        detect.backend,
        detect.precision,
        detect.providers,
        detect.threads,
        detect.engine_dir,
    )
    sha = lambda: "0" * 64  # noqa: E731
    chosen = select.choose_backend(detect, sha)
    assert chosen.engine_choice == select.choose_engine(engine, sha, "centerface")
    c = chosen.config
    assert c == replace(detect, backend=c.backend, precision=c.precision, providers=c.providers)
    assert str(chosen) == str(chosen.engine_choice) and chosen.describe() == chosen.engine_choice.describe()


def test_engine_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="invalid backend='cuda'"):
        EngineConfig(backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid precision='int4'"):
        EngineConfig(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid threads=-1"):
        EngineConfig(threads=-1)
    assert EngineConfig(providers=["CPUExecutionProvider"]).providers == ("CPUExecutionProvider",)  # type: ignore[arg-type]


# -- the registry: sources, checksums, clear errors ------------------------------------
def test_a_registered_file_model_loads_by_name(registered: dict[str, Any]) -> None:
    m = onnx_model("tiny-gen")
    assert (m.name, m.source, m.entry) == ("tiny-gen", "tiny-gen", registered)
    backend, _ = load_backend("tiny-gen", EngineConfig(backend="onnxruntime", threads=1))
    inputs = feeds(1, 4, 4)
    np.testing.assert_allclose(backend.infer(inputs)["z"], reference(inputs)["z"], rtol=1e-5)


def test_registered_file_model_missing_corrupt_or_unchecked_is_refused(
    registered: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "models" / "tiny.onnx"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped
    with pytest.raises(ModelError, match=r"model 'tiny-gen': .*models/tiny\.onnx has an unexpected sha256"):
        load_backend("tiny-gen", EngineConfig(backend="onnxruntime"))
    registry.resolve_model.cache_clear()
    path.unlink()
    with pytest.raises(ModelError, match=r"model 'tiny-gen': models/tiny\.onnx is missing \(looked in .*\)"):
        load_backend("tiny-gen", EngineConfig(backend="onnxruntime"))
    registry.resolve_model.cache_clear()
    path.write_bytes(data)
    monkeypatch.setitem(registered, "sha256", "")
    with pytest.raises(ModelError, match=r"the registry has no sha256 for .*tiny\.onnx"):
        onnx_model("tiny-gen")
    registry.resolve_model.cache_clear()
    monkeypatch.setitem(registered, "source", {"kind": "file", "path": "../tiny.onnx"})
    with pytest.raises(ModelError, match="must be relative to engines/"):
        onnx_model("tiny-gen")


def test_unknown_and_non_onnx_models_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'; registry has: centerface"):
        load_backend("nope")
    with pytest.raises(ConfigError, match="'dlib-shape-68' is a dlib model; the inference backends run ONNX models"):
        load_backend("dlib-shape-68")


def test_preparation_hooks_must_live_in_streamanon(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = registry.model_entry("centerface")
    monkeypatch.setitem(entry, "prepare", "os:system")
    with pytest.raises(ModelError, match=r"must be 'streamanon\.module:function'"):
        onnx_model("centerface")
    monkeypatch.setitem(entry, "prepare", "streamanon.detect.centerface:no_such_function")
    with pytest.raises(ModelError, match="does not exist"):
        onnx_model("centerface")


def test_every_registry_entry_is_complete() -> None:
    models = registry.load_registry()["models"]
    assert models
    for name, entry in models.items():
        assert entry["source"]["kind"] in ("python-package", "file"), name
        assert len(entry.get("sha256", "")) == 64, name
        assert entry.get("license") and entry.get("input") and entry.get("format"), name
    # the detector's ONNX reaches every backend through its hook
    assert onnx_model("centerface").data == prepare_model("centerface")


# -- build_engines.py for any model ----------------------------------------------------
def test_export_only_works_for_any_model(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_engines.py"),
            "--model",
            str(tiny),
            "--export-only",
            "--engine-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "tiny.export.onnx").read_bytes() == tiny.read_bytes()  # no hook: the ONNX as is
    # profiles are chosen on the CPU too; the dynamic input has none, and a build would say so
    assert "a build would need profiles" in proc.stderr and "--min-shapes" in proc.stderr


def test_build_checks_profiles_before_it_needs_a_gpu(tiny: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "build_engines.py"), "--model", str(tiny), "--engine-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == ConfigError.exit_code, proc.stderr
    assert "input 'x' of" in proc.stderr and "--min-shapes" in proc.stderr and "Traceback" not in proc.stderr
    shapes = ["--min-shapes", "x:1x3x8x8", "--opt-shapes", "x:2x3x16x16", "--max-shapes", "x:4x3x64x64"]
    bad = subprocess.run([*cmd, *shapes[:2]], capture_output=True, text=True, timeout=300)
    assert bad.returncode == ConfigError.exit_code and "no opt/max shape given" in bad.stderr
    if not HAS_TRT:
        proc = subprocess.run([*cmd, *shapes], capture_output=True, text=True, timeout=300)
        assert proc.returncode == MissingDependencyError.exit_code, proc.stderr
        assert "streamanon[tensorrt]" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_choice() -> None:
    be = build_engines()
    x = TensorSpec("x", ("N", 3, "H", "W"), "float32")
    v = TensorSpec("v", (2, 8), "float32")
    entry = registry.model_entry("centerface")
    # the registry's one profile is the entry's input; a fixed input needs none
    (cf,) = be.choose_profiles([TensorSpec("input.1", ("B", 3, "H", "W"), "float32")], entry)
    assert cf == Profile("input.1", (1, 3, 32, 32), (4, 3, 384, 640), (16, 3, 1088, 1920))
    per_input = {"engine_profiles": {"x": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [2, 3, 8, 8]}}}
    px, pv = be.choose_profiles([x, v], per_input)
    assert px == Profile("x", (1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 8, 8)) and pv == Profile("v", (2, 8), (2, 8), (2, 8))
    # the command line wins over the registry
    asked = be.asked_shapes(argparse.Namespace(min_shapes="x:1x3x4x4", opt_shapes="x:1x3x4x4", max_shapes="x:1x3x4x4"))
    assert be.choose_profiles([x, v], per_input, asked)[0].max == (1, 3, 4, 4)
    with pytest.raises(ConfigError, match="input 'x' of m has dynamic shape"):
        be.choose_profiles([x, v], None, None, "m")
    with pytest.raises(ConfigError, match="has no input\\(s\\) y; its inputs: x, v"):
        be.choose_profiles([x, v], per_input, {"y": {"min": (1,), "opt": (1,), "max": (1,)}})
    with pytest.raises(ConfigError, match=r"profile shape \[1, 4, 8, 8\] does not fit"):
        be.choose_profiles([x], None, {"x": {"min": (1, 4, 8, 8), "opt": (1, 4, 8, 8), "max": (1, 4, 8, 8)}})
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        be.choose_profiles([x], None, {"x": {"min": (2, 3, 8, 8), "opt": (1, 3, 8, 8), "max": (4, 3, 8, 8)}})
    with pytest.raises(ConfigError, match="invalid --min-shapes 'x:1xa'"):
        be.parse_shapes("x:1xa", "--min-shapes")
    assert be.parse_shapes("a:1x3, input.1:1x2", "--max-shapes") == {"a": (1, 3), "input.1": (1, 2)}
    with pytest.raises(ConfigError, match="positive sizes"):
        be.parse_shapes("x:0x3", "--max-shapes")
    # the inputs a profile is chosen for come from the ONNX itself (initializers excluded)
    assert be.onnx_inputs(prepare_model())[0] == TensorSpec("input.1", ("B", 3, "H", "W"), "float32")


def test_manifest_records_every_input_and_reads_old_ones(tmp_path: Path) -> None:
    profiles = [Profile("x", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)), Profile("v", (2, 8), (2, 8), (2, 8))]
    fields = dict(
        model="tiny", precision="fp16", onnx_sha256="a" * 64, tensorrt_version="10.3.0", compute_capability="9.0"
    )
    m = EngineManifest.for_profiles(profiles, source="/models/tiny.onnx", **fields)
    assert m.file_name() == "tiny-fp16-b1x2x4-sm90-trt10.3.engine"
    again = EngineManifest.from_json(m.to_json())
    assert again == m and again.profiles() == profiles
    old = json.loads(m.to_json())
    del old["other_profiles"], old["source"]  # a manifest written before these fields existed
    legacy = EngineManifest.from_json(json.dumps(old))
    assert legacy.profiles() == profiles[:1] and legacy.source == ""
    # a model given by path is rebuilt by its path
    with pytest.raises(
        EngineNotFoundError, match=r"build one with: python build_engines\.py --model /models/tiny\.onnx"
    ):
        find_engine(tmp_path, "tiny", "fp16", source="/models/tiny.onnx")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU (not available on CPU-only CI)")
def test_tensorrt_runs_any_model_like_onnxruntime(tiny: Path, tmp_path: Path) -> None:  # pragma: no cover - GPU only
    shapes = {"x": {"min": (1, 3, 8, 8), "opt": (2, 3, 16, 16), "max": (4, 3, 32, 32)}}
    build_engines().build(str(tiny), "fp32", tmp_path, shapes)
    trt, choice = load_backend(tiny, EngineConfig(backend="tensorrt", precision="fp32", engine_dir=str(tmp_path)))
    assert choice.config.backend == "tensorrt" and not choice.on_cpu
    ort, _ = load_backend(tiny, EngineConfig(backend="onnxruntime"))
    inputs = feeds(3, 16, 24)
    a, b = trt.infer(inputs), ort.infer(inputs)
    for name in b:
        assert a[name].dtype == b[name].dtype
        np.testing.assert_allclose(a[name], b[name], rtol=1e-3, atol=1e-3)
    trt.close()


def test_loader_uses_the_registry_hook_not_the_raw_file() -> None:
    raw = registry.resolve_model("centerface").read_bytes()
    m = loader.onnx_model("centerface")
    assert m.data != raw and m.origin.endswith("centerface.onnx")
    be = OrtBackend(m.data)
    assert be.input_spec()[0].shape == ("B", 3, "H", "W")  # the shipped file's is fixed 10x3x32x32
