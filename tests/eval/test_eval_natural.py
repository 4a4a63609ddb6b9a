"""``eval natural``: the two-sample classifier, the size bands and the command on real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamanon.eval.natural import accuracy, group_folds, size_band, two_sample_predictions
from streamanon.eval.product import photo_spec

ROOT = Path(__file__).resolve().parents[2]


def _groups(n: int, people: int) -> list[str]:
    return [f"p{i % people}" for i in range(n)]


def test_identical_features_score_exactly_one_half() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 16))
    p_real, p_fake = two_sample_predictions(real, real.copy(), _groups(40, 8))
    assert accuracy(p_real, p_fake) == pytest.approx(0.5)


def test_shifted_features_are_told_apart() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 16))
    fake = rng.normal(size=(40, 16)) + np.r_[6.0, np.zeros(15)]  # Bayes accuracy Phi(3) = 0.999
    p_real, p_fake = two_sample_predictions(real, fake, _groups(40, 8))
    assert accuracy(p_real, p_fake) >= 0.95


def test_same_distribution_is_near_chance() -> None:
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    p_real, p_fake = two_sample_predictions(real, fake, _groups(200, 20))
    acc = accuracy(p_real, p_fake)
    assert acc is not None and 0.35 <= acc <= 0.65


def test_folds_hold_whole_identities() -> None:
    groups = _groups(30, 7)
    folds = group_folds(groups, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(30))
    seen: dict[str, int] = {}
    for k, idx in enumerate(folds):
        for i in idx:
            assert seen.setdefault(groups[i], k) == k  # one identity never spans two folds


def test_needs_two_identities() -> None:
    x = np.zeros((4, 2))
    with pytest.raises(ValueError):
        two_sample_predictions(x, x, ["a"] * 4)


def test_each_photo_gets_its_own_secret_and_a_pooled_method_its_pool() -> None:
    """A method that draws from the run's secret (surrogate) must not paint the same drawn face
    into every photo: each photo's run gets its own secret, fixed by the seed."""
    from streamanon.config import AnonymizeConfig
    from streamanon.eval.product import MethodSpec

    spec = MethodSpec("surrogate", AnonymizeConfig(method="surrogate", seed=0))
    seeds = [photo_spec(spec, i).config.seed for i in range(50)]
    assert len(set(seeds)) == 50 and seeds == [photo_spec(spec, i).config.seed for i in range(50)]
    assert len({photo_spec(spec, i).key for i in range(50)}) == 50  # one product run each
    other = MethodSpec("surrogate", AnonymizeConfig(method="surrogate", seed=1))
    assert photo_spec(other, 0).config.seed != seeds[0]
    pooled = MethodSpec("k-same", AnonymizeConfig(method="k-same", seed=0))
    assert photo_spec(pooled, 3) is pooled  # one pool over the whole set
    fresh = MethodSpec("surrogate", AnonymizeConfig(method="surrogate", seed=None))
    assert photo_spec(fresh, 3) is fresh  # fresh entropy every run anyway


def test_size_bands() -> None:
    assert [size_band(s) for s in (20, 47.9, 48, 127, 128, 900)] == ["<48", "<48", "48-128", "48-128", ">=128", ">=128"]


@pytest.mark.usefixtures("need_dlib")
def test_copy_scores_one_half_and_blur_one(tmp_path: Path, data_dir: Path) -> None:
    """The command end to end on real photos: the two reference rows the measure rests on."""
    if not (ROOT / "engines" / "faceres.onnx").is_file():
        pytest.skip("engines/faceres.onnx is not built (python engines/build_faceres.py)")
    faces = data_dir / "identities" / "dlib_johns"
    out = tmp_path / "natural.json"
    grid = tmp_path / "grid.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamanon", "eval", "natural", "--faces", str(faces), "--methods", "none,blur"]
    cmd += ["--limit", "12", "--no-cnn", "--json", str(out), "--grid", str(grid), "--grid-faces", "3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["methods"]
    assert rows["none"]["classifier_accuracy"] == pytest.approx(0.5)
    assert rows["none"]["hog_found"] == 1.0
    assert rows["none"]["gender_agreement"] == 1.0  # a copy has the original's FaceRes gender
    assert rows["blur"]["classifier_accuracy"] >= 0.9
    assert rows["blur"]["hog_found"] <= 0.2
    import cv2

    img = cv2.imread(str(grid))
    assert img is not None and img.shape[:2] == (3 * 128, 3 * 128)  # original, none, blur


def test_grid_is_not_written_unless_asked(tmp_path: Path) -> None:
    """Without --grid nothing but the asked outputs appears (the grid holds raw faces)."""
    from streamanon.eval.cli import build_parser

    ns = build_parser().parse_args(["natural", "--faces", str(tmp_path)])
    assert ns.grid is None


def test_at_face_size_scales_the_photo_its_box_and_points() -> None:
    """``--face-px``: the photo is scaled down so its face is PX px; the box and the five
    points follow; a face already that small is left as it is."""
    from streamanon.eval.identity import Reference
    from streamanon.eval.natural import at_face_size
    from streamanon.models.recognizer import Face

    img = np.zeros((300, 400, 3), np.uint8)
    img[100:200, 150:250] = 200
    marks = np.array([[170, 130], [190, 130], [230, 130], [210, 130], [200, 170]], np.float32)
    ref = Reference(
        "p", "p.png", img, Face(np.array([150, 100, 250, 200], np.float32), marks), np.zeros(128, np.float32)
    )
    small = at_face_size(ref, 40)
    assert small.face.size == pytest.approx(40, abs=0.5)
    assert small.image.shape == (120, 160, 3) and small.image.dtype == np.uint8
    np.testing.assert_allclose(small.face.box, [60, 40, 100, 80], atol=0.01)
    np.testing.assert_allclose(small.face.landmarks, marks * 0.4, atol=0.01)
    x0, y0, x1, y1 = (int(v) for v in small.face.box)
    assert small.image[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].min() == 200  # the face is where the box says
    assert at_face_size(small, 60) is small  # never scaled up


@pytest.mark.usefixtures("need_dlib")
def test_face_px_fills_the_cctv_band(tmp_path: Path, data_dir: Path) -> None:
    """``--face-px 36`` on portraits: every face lands in the < 48 px band, and a copy still
    scores 0.5 there."""
    if not (ROOT / "engines" / "faceres.onnx").is_file():
        pytest.skip("engines/faceres.onnx is not built (python engines/build_faceres.py)")
    out = tmp_path / "natural.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "streamanon",
        "eval",
        "natural",
        "--faces",
        str(data_dir / "identities" / "dlib_johns"),
    ]
    cmd += ["--methods", "none", "--limit", "6", "--no-cnn", "--face-px", "36", "--json", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    row = result["methods"]["none"]
    assert set(row["by_size"]) == {"<48"} and row["by_size"]["<48"]["faces"] == result["dataset"]["faces"] >= 4
    assert row["classifier_accuracy"] == pytest.approx(0.5)
    assert result["settings"]["face_px"] == 36
