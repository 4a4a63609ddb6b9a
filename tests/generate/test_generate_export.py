"""ONNX export round trip, the runner's contract, and its backend choice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streamanon.errors import ConfigError, ModelError


def test_export_matches_pytorch_with_a_dynamic_batch(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import onnx

    from streamanon.generate.export import export_generator

    res = export_generator(tiny_checkpoint, tmp_path / "g.onnx")
    assert res.max_abs_diff < 1e-4
    model = onnx.load(str(res.path))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {
        "chip": ["batch", 3, 64, 64],
        "mask": ["batch", 1, 64, 64],
        "landmarks": ["batch", 68, 2],
        "z": ["batch", 64],
    }
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["streamanon.size"] == "64" and meta["streamanon.train_steps"] == "2"


def _inputs(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from streamanon.anonymize.generator_chip import template_mask

    rng = np.random.default_rng(seed)
    chips = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.broadcast_to(template_mask(size), (n, size, size)).copy()
    lms = rng.uniform(20, 44, (n, 68, 2)).astype(np.float32)
    return chips, masks, lms


def test_runner_returns_uint8_chips_changed_only_inside_the_mask(tiny_onnx: Path) -> None:
    from streamanon.backends.base import EngineConfig
    from streamanon.models.generator import GeneratorRunner

    runner = GeneratorRunner(tiny_onnx, EngineConfig(backend="onnxruntime", threads=1))
    assert (runner.size, runner.z_dim) == (64, 64)
    rng = np.random.default_rng(0)
    for n in (1, 5):
        chips, masks, lms = _inputs(n)
        out = runner(chips, masks, lms, runner.latents(n, rng))
        assert out.shape == (n, 64, 64, 3) and out.dtype == np.uint8
        outside = masks == 0
        assert np.array_equal(out[outside], chips[outside])
        assert np.abs(out[~outside].astype(int) - chips[~outside]).mean() > 5
    # the latent changes the face; the same latent gives the same face
    chips, masks, lms = _inputs(2)
    z = runner.latents(2, rng)
    a, b = runner(chips, masks, lms, z), runner(chips, masks, lms, z)
    c = runner(chips, masks, lms, runner.latents(2, rng))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert runner(chips[:0], masks[:0], lms[:0], z[:0]).shape == (0, 64, 64, 3)


def test_runner_rejects_bad_inputs(tiny_onnx: Path) -> None:
    from streamanon.backends.base import EngineConfig
    from streamanon.models.generator import GeneratorRunner

    runner = GeneratorRunner(tiny_onnx, EngineConfig(backend="onnxruntime", threads=1))
    chips, masks, lms = _inputs(2)
    z = np.zeros((2, 64), np.float32)
    bad = lms.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        runner(chips, masks, bad, z)
    with pytest.raises(ConfigError, match="chips"):
        runner(chips[:, :32, :32], masks, lms, z)
    with pytest.raises(ConfigError, match="latents"):
        runner(chips, masks, lms, z[:, :8])


def test_missing_or_corrupt_onnx_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    from streamanon.backends.base import EngineConfig
    from streamanon.models.generator import GeneratorRunner

    ort = EngineConfig(backend="onnxruntime")
    with pytest.raises(ModelError, match=r"missing\.onnx"):
        GeneratorRunner(tmp_path / "missing.onnx", ort)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(500))
    for backend in ("onnxruntime", "auto"):
        with pytest.raises(ModelError, match=r"corrupt\.onnx"):
            GeneratorRunner(corrupt, EngineConfig(backend=backend))  # type: ignore[arg-type]


def test_an_onnx_model_that_is_not_a_generator_is_refused(tmp_path: Path) -> None:
    import torch

    from streamanon.backends.base import EngineConfig
    from streamanon.models.generator import GeneratorRunner

    other = tmp_path / "conv.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 3, 3), (torch.zeros(1, 3, 8, 8),), str(other), dynamo=False, input_names=["x"])
    with pytest.raises(ModelError, match=r"conv\.onnx is not a streamanon generator"):
        GeneratorRunner(other, EngineConfig(backend="onnxruntime"))


def test_the_backend_is_chosen_like_the_detectors(tiny_onnx: Path) -> None:
    from streamanon.backends.base import EngineConfig
    from streamanon.backends.loader import onnx_model, resolve_engine
    from streamanon.models.generator import GeneratorRunner

    auto = EngineConfig(threads=1)
    runner = GeneratorRunner(tiny_onnx, auto)
    detector_choice = resolve_engine(onnx_model("centerface"), auto)
    assert runner.choice.config.backend == detector_choice.config.backend
    assert runner.choice.config.precision == detector_choice.config.precision
    chips, masks, lms = _inputs(3)
    out = runner(chips, masks, lms, np.zeros((3, 64), np.float32))
    ref = GeneratorRunner(tiny_onnx, EngineConfig(backend="onnxruntime", threads=1))(
        chips, masks, lms, np.zeros((3, 64), np.float32)
    )
    # bf16 on OpenVINO may differ by a few code values; fp32 backends agree to rounding
    tol = 24 if runner.choice.config.precision == "bf16" else 1
    assert np.abs(out.astype(int) - ref).max() <= tol
