"""``--face-bank`` folders: one loader (``anonymize.facebank``) and one error behaviour for
``k-same`` and ``surrogate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamanon.anonymize.facebank import face_bank_folder
from streamanon.anonymize.ksame import load_face_bank
from streamanon.errors import ConfigError
from streamanon.types import Detections


def write_png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def bank(tmp_path: Path) -> Path:
    write_png(tmp_path / "ann" / "1.png")
    write_png(tmp_path / "ann" / "more" / "2.jpg")
    write_png(tmp_path / "bob" / "1.png")
    write_png(tmp_path / "loose.png")
    (tmp_path / "bob" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "bob" / "notes.txt").write_text("x")
    write_png(tmp_path / ".hidden" / "1.png")
    return tmp_path


def test_layout_persons_and_files(tmp_path: Path) -> None:
    b = face_bank_folder(bank(tmp_path))
    assert sorted(b.persons) == ["ann", "bob", "loose"]
    assert [p.name for p in b.persons["ann"]] == ["1.png", "2.jpg"]
    assert b.files == 5  # broken.png is an image name: it counts, and is skipped when read
    got = [(person, path.name) for person, path, _ in b.images()]
    assert ("bob", "broken.png") not in got and len(got) == 4
    assert [p.name for p in b.unreadable] == ["broken.png"]


@pytest.mark.parametrize(("make", "message"), [("missing", "not a folder"), ("empty", "no image files")])
def test_bad_folders_are_one_line_errors(tmp_path: Path, make: str, message: str) -> None:
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
        (path / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match=message):
        face_bank_folder(path)


def test_ksame_and_surrogate_report_a_faceless_bank_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No face in the bank: the same ConfigError from both methods' loaders."""
    import streamanon.anonymize.surrogate_bank as sb

    root = bank(tmp_path)

    def nothing(image: Any) -> Detections:
        return Detections(np.zeros((0, 4), np.float32))

    with pytest.raises(ConfigError) as ks:
        load_face_bank(root, nothing)

    class NoFace:
        def __init__(self, *a: Any, **k: Any) -> None: ...

        def detect(self, image: Any) -> list[Any]:
            return []

    monkeypatch.setattr(sb, "DlibRecogniser", NoFace)
    monkeypatch.setattr(sb, "Landmarker68", NoFace)
    monkeypatch.setattr(sb, "FaceResRecogniser", NoFace)
    with pytest.raises(ConfigError) as su:
        sb.load_photos([root])
    assert str(ks.value) == str(su.value)
    assert str(ks.value) == f"--face-bank {root}: no face found in 5 images, 1 unreadable"


def _adversarial_models() -> Any:
    """``AdversarialModels`` without its model files: a fixed 5-point fit and a recogniser
    whose embedding is the chip's first 128 values."""
    torch = pytest.importorskip("torch")
    from streamanon.anonymize.adversarial import AdversarialModels

    m = object.__new__(AdversarialModels)
    m.device, m.gallery = "cpu", None
    points = np.array([[[40, 30], [30, 30], [60, 30], [50, 30], [45, 55]]], np.float64)
    m.landmarker = lambda image, boxes: points
    m.net = lambda x: torch.flatten(x, 1)[:, :128]
    return m


def one_face(image: Any) -> Detections:
    h, w = image.shape[:2]
    return Detections(np.array([[w * 0.3, h * 0.3, w * 0.7, h * 0.7]], np.float32))


def test_adversarial_gallery_reads_the_shared_layout(tmp_path: Path) -> None:
    """``--method adversarial``'s gallery: one identity per person of the shared loader
    (a nested folder belongs to its person, a loose image is its own), a broken file skipped."""
    m = _adversarial_models()
    m.load_gallery(bank(tmp_path), one_face)
    assert m.gallery.names == ("ann", "bob", "loose")
    assert np.bincount(m.gallery.labels).tolist() == [2, 1, 1]
    assert m.gallery.embeddings.shape == (4, 128)


def test_adversarial_reports_a_faceless_bank_like_ksame(tmp_path: Path) -> None:
    root = bank(tmp_path)

    def nothing(image: Any) -> Detections:
        return Detections(np.zeros((0, 4), np.float32))

    with pytest.raises(ConfigError) as ks:
        load_face_bank(root, nothing)
    with pytest.raises(ConfigError) as adv:
        _adversarial_models().load_gallery(root, nothing)
    assert str(adv.value) == str(ks.value) == f"--face-bank {root}: no face found in 5 images, 1 unreadable"
    with pytest.raises(ConfigError, match="not a folder"):
        _adversarial_models().load_gallery(root / "missing", nothing)
