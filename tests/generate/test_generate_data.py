"""Chip geometry, the training-chip cache, and the memorisation statistics."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.anonymize.align import TEMPLATE5, align_landmarks
from streamanon.anonymize.generator_chip import (
    CHIP_ZOOM,
    FLIP68,
    chip_masks,
    flip_landmarks,
    template_mask,
    widen,
)
from streamanon.anonymize.mask import face_regions
from streamanon.errors import ConfigError
from streamanon.generate.data import ChipBuilder, ChipSettings, build_cache, scan_sources
from streamanon.generate.memorisation import memorisation_report
from streamanon.types import Detections


def test_flip_permutation_is_a_mirror_involution() -> None:
    assert sorted(FLIP68.tolist()) == list(range(68))
    assert np.array_equal(FLIP68[FLIP68], np.arange(68))
    assert FLIP68[36] == 45 and FLIP68[48] == 54 and FLIP68[8] == 8 and FLIP68[30] == 30
    lm = np.random.default_rng(0).uniform(0, 63, (68, 2)).astype(np.float32)
    assert np.allclose(flip_landmarks(flip_landmarks(lm, 64), 64), lm)


def _five(cx: float, cy: float, eye: float) -> np.ndarray:
    """The template's five points with eye distance ``eye``, eyes centred on (cx, cy)."""
    t = TEMPLATE5 - TEMPLATE5[:2].mean(0)
    return (t * (eye / np.linalg.norm(TEMPLATE5[1] - TEMPLATE5[0])) + (cx, cy)).astype(np.float32)


def _face(cx: float = 200, cy: float = 150, eye: float = 40) -> Detections:
    five = _five(cx, cy, eye)
    box = np.array([[cx - eye, cy - 0.9 * eye, cx + eye, cy + 1.5 * eye]], np.float32)
    return Detections(box, np.ones(1, np.float32), five[None])


def test_generator_chip_is_the_template_chip_zoomed_out() -> None:
    d = _face()
    base = align_landmarks(d.landmarks[0], 64)
    wide = widen(base)
    assert wide.scale == pytest.approx(base.scale * CHIP_ZOOM)
    # the template's eyes keep their distance ratio and stay inside the chip
    eye = np.linalg.norm(wide.landmarks5[1] - wide.landmarks5[0])
    assert eye == pytest.approx(np.linalg.norm(TEMPLATE5[1] - TEMPLATE5[0]) * 64 * CHIP_ZOOM, rel=0.05)
    assert ((wide.landmarks5 > 0) & (wide.landmarks5 < 64)).all()


def test_chip_mask_is_the_products_ellipse_warped_into_the_chip() -> None:
    d = _face()
    al = widen(align_landmarks(d.landmarks[0], 64))
    mask = chip_masks(d, [al], 640, 480)[0]
    region = face_regions(d, 640, 480, "ellipse", 1.3, 2.0)[0]
    # area is preserved up to the similarity's scale
    expected = (region.mask > 0).sum() * al.scale**2
    assert mask.sum() == pytest.approx(expected, rel=0.05)
    # every chip pixel inside the mask comes from a frame pixel inside the region
    inv = al.inverse
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = region.roi[:2]
    inside = region.mask[
        np.clip(np.round(pts[:, 1]).astype(int) - y0, 0, region.mask.shape[0] - 1),
        np.clip(np.round(pts[:, 0]).astype(int) - x0, 0, region.mask.shape[1] - 1),
    ]
    assert (inside > 0).mean() > 0.97
    # the median ellipse leaves context on every side of the chip
    t = template_mask(64)
    assert 0.2 < t.mean() < 0.5 and not t[0].any() and not t[-1].any() and not t[:, 0].any() and not t[:, -1].any()


class _CountingDetector:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls += 1
        h, w = images[0].shape[:2]
        return [_face(w / 2, h / 2 - 10, min(w, h) / 6)]


def _landmarks68(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """68 points consistent with ``_face``'s five (eye rings, nose tip, mouth corners)."""
    out = np.zeros((len(boxes), 68, 2), np.float32)
    for i, b in enumerate(boxes):
        eye = (b[2] - b[0]) / 2
        cx, cy = (b[0] + b[2]) / 2, b[1] + 0.9 * eye
        five = _five(cx, cy, eye)
        pts = np.tile(five[2], (68, 1))
        pts[36:42], pts[42:48], pts[48], pts[54] = five[0], five[1], five[3], five[4]
        out[i] = pts
    return out


def test_cache_is_built_once_per_source_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "alice"
    folder.mkdir(parents=True)
    for i in range(2):
        img = np.full((240, 320, 3), 60 + 40 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    (tmp_path / "data" / "notes.txt").write_text("not media")
    sources = scan_sources([tmp_path / "data"])
    assert [(s.kind, s.label) for s in sources] == [("image", "alice"), ("image", "alice")]
    det = _CountingDetector()
    settings = ChipSettings(size=64)
    builder = ChipBuilder(settings, det, _landmarks68)
    cache = tmp_path / "cache"
    first = build_cache(sources, cache, settings, builder)
    assert len(first) == 2 and det.calls == 2
    assert first.chips.shape == (2, 64, 64, 3) and first.masks.shape == (2, 64, 64)
    assert 0.15 < first.masks.mean() < 0.6
    again = build_cache(sources, cache, settings, builder)
    assert det.calls == 2  # nothing detected twice
    assert np.array_equal(again.chips, first.chips) and again.labels == ["alice", "alice"]
    assert len(list((cache / "chips-64").glob("*.npz"))) == 2
    with pytest.raises(ConfigError, match="size"):
        ChipSettings(size=96)


def test_real_faces_through_the_products_detector(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("dlib")
    johns = sorted((data_dir / "identities" / "dlib_johns" / "John_Salley").glob("*.jpg"))[:2]
    settings = ChipSettings(size=64)
    cs = build_cache(scan_sources(johns), tmp_path / "cache", settings)
    assert len(cs) == 2
    # the eyes of the 68-point model land near the template's eyes in the generator chip
    eyes = np.stack([cs.landmarks[:, 36:42].mean(1), cs.landmarks[:, 42:48].mean(1)], 1)
    base = widen(align_landmarks(TEMPLATE5 * 64, 64)).landmarks5[:2]
    assert np.abs(eyes - base).max() < 4


def test_memorisation_report_tells_a_copying_generator_from_a_novel_one() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (50, 128)).astype(np.float32)
    labels = [f"p{i // 10}" for i in range(50)]
    real = rng.normal(0, 1, (10, 128)).astype(np.float32)  # strangers: far from everyone
    rows = np.repeat(np.arange(10), 2)
    copying = train[rng.integers(0, 50, 20)] + 0.001
    novel = rng.normal(0, 1, (20, 128)).astype(np.float32)
    bad = memorisation_report(train, labels, real, copying, rows, 0.6)
    good = memorisation_report(train, labels, real, novel, rows, 0.6)
    assert bad["generated_match_rate"] == 1.0 and bad["memorisation"] is True
    assert good["generated_match_rate"] == 0.0 and good["memorisation"] is False
    assert bad["real_match_rate"] == good["real_match_rate"] == 0.0
    assert sum(bad["matched_training_labels"].values()) == 20
    with pytest.raises(ConfigError):
        memorisation_report(train[:0], [], real, novel, rows, 0.6)


def test_latent_diversity_counts_pairs_of_one_input_only() -> None:
    from streamanon.generate.memorisation import latent_diversity

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (2, 128)).astype(np.float32)
    # input 0: three latents give the same face; input 1: two latents give different faces
    emb = np.stack([a, a + 0.001, a - 0.001, b, -b])
    rows = np.array([0, 0, 0, 1, 1])
    d = latent_diversity(emb, rows, 0.6)
    assert d["latent_pairs"] == 4  # 3 pairs of input 0, 1 of input 1; none across inputs
    assert d["latent_same_rate"] == pytest.approx(0.75)
    assert latent_diversity(emb[:2], np.array([0, 1]), 0.6)["latent_same_rate"] is None


def test_scan_sources_errors(tmp_path: Path) -> None:
    from streamanon.errors import SourceOpenError

    with pytest.raises(SourceOpenError, match="not found"):
        scan_sources([tmp_path / "missing"])
    with pytest.raises(SourceOpenError, match="no images or videos"):
        scan_sources([tmp_path])


def test_cap_per_label_keeps_evenly_spaced_chips_of_each_person() -> None:
    from streamanon.generate.data import ChipSet, cap_per_label

    n = 7
    cs = ChipSet(
        np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(64, 1).repeat(64, 2).repeat(3, 3),
        np.zeros((n, 64, 64), np.uint8),
        np.zeros((n, 68, 2), np.float32),
        np.array([0, 0, 0, 0, 0, 1, 1], np.int64),
        [("a.mp4", "a"), ("b", "b")],
    )
    capped = cap_per_label(cs, 3)
    assert capped.labels == ["a", "a", "a", "b", "b"]
    assert capped.chips[:, 0, 0, 0].tolist() == [0, 2, 4, 5, 6]
