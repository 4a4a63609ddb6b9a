from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamanon.backends import registry
from streamanon.backends.onnxruntime import select_providers
from streamanon.config import DetectConfig
from streamanon.detect import create_detector
from streamanon.detect.centerface import network_size
from streamanon.errors import ConfigError, ModelError
from streamanon.io import read_image


@pytest.fixture(scope="module")
def detector():
    return create_detector(DetectConfig())


def test_two_people(detector, data_dir: Path) -> None:
    img = read_image(data_dir / "identities/face_recognition_examples/two_people.jpg").image
    (dets,) = detector([img])
    strong = dets[dets.score >= 0.5]
    assert len(strong) == 2
    # Landmarks lie inside their boxes, eyes above the mouth.
    for box, lm in zip(strong.xyxy, strong.landmarks, strict=True):
        assert (lm[:, 0] >= box[0]).all() and (lm[:, 0] <= box[2]).all()
        assert lm[0, 1] < lm[3, 1] and lm[1, 1] < lm[4, 1]


def test_batch_equals_single(detector, data_dir: Path) -> None:
    img = read_image(data_dir / "identities/face_recognition_examples/obama.jpg").image
    flipped = np.ascontiguousarray(img[:, ::-1])
    single = [detector([im])[0] for im in (img, flipped)]
    batched = detector([img, flipped])
    for s, b in zip(single, batched, strict=True):
        np.testing.assert_allclose(s.xyxy, b.xyxy, atol=0.5)


def test_no_faces_in_noise(detector) -> None:
    img = np.random.default_rng(0).integers(0, 256, (360, 640, 3), np.uint8)
    (dets,) = detector([img])
    assert (dets.score < 0.5).all()


@pytest.mark.parametrize(
    ("w", "h", "size"),
    [
        (640, 360, None),
        (1920, 1080, None),
        (321, 241, None),
        (608, 1080, 960),
        (50, 30, None),
        (820, 460, None),
        (3840, 2160, None),
    ],
)
def test_network_size(w: int, h: int, size: int | None) -> None:
    nw, nh = network_size(w, h, size)
    assert nw % 32 == 0 and nh % 32 == 0
    assert abs(nw / nh - w / h) < 0.2 * (w / h) + 0.5
    assert max(nw, nh) <= max(size or 1920, 32)
    if size is None and max(w, h) <= 1920:  # native: never shrunk, at most one stride added
        assert w <= nw < w + 32 and h <= nh < h + 32


def test_unavailable_provider_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"not available; available: .*CPUExecutionProvider"):
        select_providers(["CUDAExecutionProvider"])
    with pytest.raises(ConfigError):
        create_detector(DetectConfig(providers=("TensorrtExecutionProvider",)))


def test_unknown_detector_and_model() -> None:
    with pytest.raises(ConfigError, match="choose from: centerface"):
        create_detector(DetectConfig(model="yolo"))
    with pytest.raises(ConfigError, match="registry has"):
        registry.model_entry("nope")


def test_checksum_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry.load_registry()
    entry = dict(reg["models"]["centerface"], sha256="0" * 64)
    monkeypatch.setitem(reg["models"], "centerface", entry)
    registry.resolve_model.cache_clear()
    try:
        with pytest.raises(ModelError, match="unexpected sha256"):
            registry.resolve_model("centerface")
    finally:
        registry.resolve_model.cache_clear()


def test_missing_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry.load_registry()
    # a model that ships in a Python package (CenterFace itself now ships in engines/)
    name = "dlib-shape-5"
    src = dict(reg["models"][name]["source"], package="not_a_package_xyz", distribution="not-a-package")
    monkeypatch.setitem(reg["models"], name, dict(reg["models"][name], source=src))
    registry.resolve_model.cache_clear()
    try:
        with pytest.raises(ModelError, match="pip install not-a-package"):
            registry.resolve_model(name)
    finally:
        registry.resolve_model.cache_clear()
