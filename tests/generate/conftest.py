"""Fixtures of the generator tests: skip without torch/dlib; tiny chip sets and models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'streamanon[{extra}]')")


@pytest.fixture(autouse=True)
def need_torch() -> None:
    _need("torch", "torch")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def need_dlib() -> None:
    _need("dlib", "eval")
    _need("face_recognition_models", "eval")


def smooth_faces(n: int, size: int, seed: int = 0) -> Any:
    """A ChipSet of smooth synthetic 'faces' (blobs on gradients) with the template mask
    and landmarks scattered over the face region: learnable in a few steps, unlike noise."""
    import cv2

    from streamanon.anonymize.generator_chip import template_mask
    from streamanon.generate.data import ChipSet

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    chips = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        base = np.stack(
            [xx * rng.uniform(50, 200), yy * rng.uniform(50, 200), np.full_like(xx, rng.uniform(40, 200))], -1
        )
        img = np.ascontiguousarray(base.astype(np.uint8))
        c = (int(size * rng.uniform(0.4, 0.6)), int(size * rng.uniform(0.45, 0.6)))
        # the face's colour follows from its surroundings, so the masked region is predictable
        colour = tuple(int(v) for v in 255 - base.mean(axis=(0, 1)))
        cv2.ellipse(img, c, (size // 4, size // 3), 0, 0, 360, colour, -1)
        chips[i] = img
    masks = np.broadcast_to(template_mask(size), (n, size, size)).copy()
    lms = rng.uniform(0.35 * size, 0.65 * size, (n, 68, 2)).astype(np.float32)
    return ChipSet(chips, masks, lms, np.zeros(n, np.int64), [("synthetic", "synthetic")])


@pytest.fixture
def faces64() -> Any:
    return smooth_faces(8, 64)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, faces64: Any) -> Path:
    """A 2-step checkpoint of a narrow 64 px generator (no identity term: fast)."""
    from streamanon.generate.model import GeneratorConfig
    from streamanon.generate.train import TrainConfig, Trainer

    tr = Trainer(
        faces64,
        GeneratorConfig(size=64, channels=8, d_channels=8),
        TrainConfig(batch=4, id_weight=0, id_div_weight=0),
        "cpu",
    )
    path = tmp_path / "g.pt"
    tr.fit(2, path, progress=False)
    return path


@pytest.fixture
def tiny_onnx(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    from streamanon.generate.export import export_generator

    out = tmp_path / "g.onnx"
    export_generator(tiny_checkpoint, out)
    return out
