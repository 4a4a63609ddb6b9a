"""dp-pixelate, k-same and svd: the guarantees' arithmetic, batching, fallbacks, fail-closed."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from streamanon.anonymize import AnonymizerFactory, AnonymizerSession, FrameInfo
from streamanon.anonymize.align import TEMPLATE5, align_box, align_landmarks, chip_to_roi, warp_chip
from streamanon.anonymize.dp import DPPixelateAnonymizer, cell_edges, laplace_scale
from streamanon.anonymize.ksame import FacePool, KSameAnonymizer, k_same_clusters
from streamanon.anonymize.mask import face_region, union_mask
from streamanon.anonymize.svd import svd_obfuscate
from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.pipeline import Pipeline, Stages
from streamanon.types import Detections, Frame

W, H = 320, 240
A, B = (20.0, 20.0, 100.0, 110.0), (190.0, 30.0, 270.0, 120.0)


def _lms(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (TEMPLATE5 * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)


def _dets(
    *boxes: tuple[float, float, float, float], ids: list[int] | None = None, landmarks: bool = True
) -> Detections:
    xyxy = np.array(boxes, np.float32)
    lms = np.stack([_lms(b) for b in boxes]) if landmarks else None
    return Detections(
        xyxy, np.full(len(boxes), 0.9, np.float32), lms, np.array(ids if ids else list(range(1, len(boxes) + 1)))
    )


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 220, (H, W, 3), dtype=np.uint8)


def _run(
    config: AnonymizeConfig, frames: list[tuple[np.ndarray, Detections]], pool: FacePool | None = None
) -> tuple[list[np.ndarray], dict[str, Any]]:
    factory = AnonymizerFactory(config)
    session = AnonymizerSession(factory(pool=pool) if factory.pooled else factory())
    outs = [session(img, d, FrameInfo(i)) for i, (img, d) in enumerate(frames)]
    return outs, session.close()


def _pool(k: int, n: int, seed: int = 0) -> FacePool:
    rng = np.random.default_rng(seed)
    pool = FacePool(k)
    for i in range(n):
        pool.add(rng.integers(0, 255, (64, 64, 3)).astype(np.float32), f"face{i}")
    return pool


METHODS = [
    AnonymizeConfig(method="dp-pixelate", seed=3),
    AnonymizeConfig(method="svd", seed=3),
    AnonymizeConfig(method="k-same", k=3),
]


@pytest.mark.parametrize("config", METHODS, ids=lambda c: c.method)
def test_a_batch_of_faces_equals_one_by_one(config: AnonymizeConfig) -> None:
    img = _image()
    pool = _pool(config.k, 7) if config.method == "k-same" else None
    both, _ = _run(config, [(img, _dets(A, B))], pool)
    # one face at a time, in a run where the tracks start in the same order
    factory = AnonymizerFactory(config)
    anon = factory(pool=pool) if factory.pooled else factory()
    anon.track_started(1, FrameInfo(0))
    anon.track_started(2, FrameInfo(0))
    one = anon.apply(img, _dets(A, ids=[1]), FrameInfo(0))
    one = anon.apply(one, _dets(B, ids=[2]), FrameInfo(0))
    np.testing.assert_array_equal(both[0], one)


@pytest.mark.parametrize("config", METHODS, ids=lambda c: c.method)
def test_only_the_mask_changes_and_all_of_it_is_replaced(config: AnonymizeConfig) -> None:
    img = _image()
    pool = _pool(config.k, 7) if config.method == "k-same" else None
    dets = _dets(A, B)
    (out,), _ = _run(config, [(img, dets)], pool)
    inside = union_mask(dets, W, H, config.shape, config.mask_scale, config.mask_margin)
    np.testing.assert_array_equal(out[~inside], img[~inside])
    # the raw face is gone: (almost) no pixel inside the mask keeps its value
    assert (out[inside] == img[inside]).all(axis=-1).mean() < 0.1


@pytest.mark.parametrize("config", METHODS, ids=lambda c: c.method)
def test_rows_without_landmarks_take_the_box_path(config: AnonymizeConfig) -> None:
    img = _image()
    pool = _pool(config.k, 7) if config.method == "k-same" else None
    dets = _dets(A, landmarks=False)
    (out,), _ = _run(config, [(img, dets)], pool)
    inside = union_mask(dets, W, H, config.shape, config.mask_scale, config.mask_margin)
    assert inside.any()
    assert (out[inside] == img[inside]).all(axis=-1).mean() < 0.1


def test_dp_noise_matches_fans_laplace_scale() -> None:
    # a flat grey face: every cell mean is 128, so the released value - 128 is the noise
    cfg = AnonymizeConfig(
        method="dp-pixelate", epsilon=4.0, dp_cells=8, dp_m=4, seed=11, mask_scale=1.0, mask_margin=0.0, shape="box"
    )
    img = np.full((H, W, 3), 128, np.uint8)
    box = (0.0, 0.0, 160.0, 160.0)  # 20x20-pixel cells: b2 = 400
    scale = laplace_scale(400, 4, 4.0)
    assert scale == pytest.approx(255 * 4 / (400 * 4.0))
    anon = DPPixelateAnonymizer(cfg)
    noise = []
    for t in range(1, 201):  # 200 tracks x 64 cells x 3 channels
        anon.track_started(t, FrameInfo(0))
        out = anon.apply(img, _dets(box, ids=[t]), FrameInfo(0))
        cells = out[10:160:20, 10:160:20].astype(np.float64) - 128
        noise.append(cells)
        anon.track_ended(t, FrameInfo(0))
    z = np.concatenate([n.ravel() for n in noise])
    # rounding to uint8 adds +-0.5; E|Laplace(b)| = b, sd of the mean of |z| = b / sqrt(n)
    assert abs(np.abs(z).mean() - scale) < 5 * scale / np.sqrt(z.size) + 0.1
    assert abs(z.mean()) < 5 * np.sqrt(2) * scale / np.sqrt(z.size) + 0.05
    rep = anon.report()
    assert rep["per_track"][0]["epsilon_per_channel"] == 4.0
    assert rep["per_track"][0]["laplace_scale_min"] == pytest.approx(scale, abs=1e-3)


def test_dp_noise_is_drawn_once_per_track() -> None:
    cfg = AnonymizeConfig(method="dp-pixelate", seed=5)
    img = np.full((H, W, 3), 128, np.uint8)
    outs, rep = _run(cfg, [(img, _dets(A, ids=[1])), (img, _dets(A, ids=[1])), (img, _dets(A, ids=[2]))])
    np.testing.assert_array_equal(outs[0], outs[1])  # the same track: the same draw
    assert not np.array_equal(outs[1], outs[2])  # a new track: a new draw
    assert [r["frames"] for r in rep["per_track"]] == [2, 1]


def test_dp_cells_have_exact_means_and_sizes() -> None:
    edges = cell_edges(37, 8)
    assert edges[0] == 0 and edges[-1] == 37 and len(edges) == 9
    assert np.diff(edges).min() >= 4
    assert len(cell_edges(3, 8)) == 4  # fewer pixels than cells: one cell per pixel


def test_k_same_clusters_have_at_least_k_members() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 10, 23, 31):
        desc = rng.normal(size=(n, 16)).astype(np.float32)
        clusters = k_same_clusters(desc, 5)
        assert sorted(i for c in clusters for i in c) == list(range(n))
        assert all(len(c) >= 5 for c in clusters)
    assert k_same_clusters(rng.normal(size=(4, 16)).astype(np.float32), 5) == []


def test_k_same_surrogate_is_shared_by_k_faces_and_is_no_single_face() -> None:
    pool = _pool(3, 10)
    surrogates = [pool.surrogate_for(c)[0] for c in pool.chips]
    for s in surrogates:
        same = sum(np.array_equal(s, t) for t in surrogates)
        assert same >= 3
        assert not any(np.allclose(s, c) for c in pool.chips)
    assert sum(pool.cluster_sizes) == 10 and min(pool.cluster_sizes) >= 3


def test_k_same_pool_smaller_than_k_falls_back_to_solid() -> None:
    cfg = AnonymizeConfig(method="k-same", k=10)
    img = _image()
    dets = _dets(A)
    (out,), rep = _run(cfg, [(img, dets)], _pool(10, 4))
    inside = union_mask(dets, W, H, cfg.shape, cfg.mask_scale, cfg.mask_margin)
    assert (out[inside] == 0).all()  # solid black
    assert rep["fallback"]["method"] == "solid" and rep["fallback"]["faces"] == 1
    assert "4 faces < k=10" in rep["fallback"]["why"]


def test_k_same_counts_persons_not_photos() -> None:
    # 12 photos of 4 persons (3 each): with k=3 every cluster holds >= 3 persons, and all
    # photos of one person share one surrogate; 2 persons' photos are no k=3 pool at all.
    rng = np.random.default_rng(1)
    people = rng.normal(size=(4, 128)).astype(np.float32)
    pool = FacePool(3)
    for p in range(4):
        for j in range(3):
            pool.add(rng.integers(0, 255, (64, 64, 3)).astype(np.float32), f"p{p}-{j}", people[p] + 0.01 * j)
    assert pool.by_person and pool.ready
    surrogates = [pool.surrogate_for(c)[0] for c in pool.chips]
    assert pool.persons == 4 and min(pool.cluster_sizes) >= 3
    for p in range(4):  # one person, one surrogate
        assert all(np.array_equal(surrogates[3 * p], surrogates[3 * p + j]) for j in range(3))
    small = FacePool(3)
    for i in range(10):
        small.add(np.zeros((64, 64, 3), np.float32), f"f{i}", people[i % 2])
    assert len(small) == 10 and not small.ready


def test_k_same_keeps_one_surrogate_per_track() -> None:
    cfg = AnonymizeConfig(method="k-same", k=3)
    pool = _pool(3, 9)
    outs, rep = _run(cfg, [(_image(1), _dets(A, ids=[4])), (_image(2), _dets(A, ids=[4]))], pool)
    dets = _dets(A)
    inside = union_mask(dets, W, H, cfg.shape, cfg.mask_scale, cfg.mask_margin)
    np.testing.assert_array_equal(outs[0][inside], outs[1][inside])
    assert rep["per_track"] == [{"track_id": 4, "frames": 2, "pool_entry": rep["per_track"][0]["pool_entry"]}]
    assert rep["pool_faces"] == 9 and rep["k"] == 3


def test_svd_keeps_rank_k_and_noise_is_per_track() -> None:
    rng = np.random.default_rng(0)
    chip = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    zero = np.zeros((3, 4))
    out = svd_obfuscate(chip, 4, zero, 0.01)
    for c in range(3):
        s = np.linalg.svd(out[:, :, c].astype(np.float64), compute_uv=False)
        assert s[4] < 0.05 * s[0] + 3  # rank 4 up to uint8 rounding
    noisy = svd_obfuscate(chip, 4, np.ones((3, 4)), 0.01)  # +100 on every kept value
    assert np.abs(noisy.astype(int) - out.astype(int)).mean() > 1


def test_alignment_round_trips() -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) * 255 // (W + H)], -1).astype(np.uint8)  # smooth
    sq = (20.0, 20.0, 100.0, 100.0)  # a square face: a similarity fits its points exactly
    a = align_landmarks(_lms(sq), 64)
    np.testing.assert_allclose(a.landmarks5, TEMPLATE5 * 64, atol=1e-3)
    assert a.scale == pytest.approx(64 / 80, rel=1e-4)
    chip = warp_chip(img, a)
    region = face_region(np.array(sq, np.float32), _lms(sq), W, H, "ellipse", 1.0)
    assert region is not None
    back = chip_to_roi(chip, a, region)
    x0, y0, x1, y1 = region.roi
    # warping there and back of a smooth image is a resampling: within a code value or two
    err = np.abs(back.astype(int) - img[y0:y1, x0:x1].astype(int))[region.mask > 0]
    assert err.mean() < 1.0 and np.percentile(err, 99) <= 3
    assert align_box(np.array(A, np.float32), 64).box_only


@pytest.mark.parametrize("method", ["dp-pixelate", "svd", "k-same"])
def test_a_failing_method_masks_the_frame(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamanon.anonymize.chips as chips
    import streamanon.anonymize.dp as dp

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("method exploded")

    monkeypatch.setattr(dp, "dp_pixelate", boom)
    monkeypatch.setattr(chips, "warp_chip", boom)
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method=method, k=2))

    def detector(images: Any) -> list[Detections]:
        return [_dets(A) for _ in images]

    factory = AnonymizerFactory(cfg.anonymize)
    st = Stages(cfg, detector=detector, anonymizer_factory=factory)
    pool = _pool(2, 4)
    anon = st.new_anonymizer(pool=pool) if factory.pooled else None
    img = _image()
    res = list(Pipeline(cfg, st).run([Frame(img, 0)], anonymizer=anon))
    assert res[0].failed is not None and "exploded" in res[0].failed
    assert not res[0].image.any()  # fully masked, never raw


def test_k_same_pool_needs_k_faces() -> None:
    assert not FacePool(3).ready
    with pytest.raises(Exception, match="fewer than k"):
        FacePool(3).surrogate_for(np.zeros((64, 64, 3)))


def test_config_rejects_bad_parameters() -> None:
    from streamanon.errors import ConfigError

    for bad in ({"epsilon": 0}, {"dp_cells": 1}, {"k": 1}, {"svd_k": 0}, {"dp_m": 0}):
        with pytest.raises(ConfigError):
            AnonymizeConfig(method="dp-pixelate", **bad)
    with pytest.raises(ConfigError, match="face-bank"):
        AnonymizerFactory(dataclasses.replace(AnonymizeConfig(), face_bank="x"))
    assert isinstance(AnonymizerFactory(AnonymizeConfig(method="k-same", k=2))(pool=_pool(2, 3)), KSameAnonymizer)


def test_68_point_alignment_on_a_real_face(data_dir: Any) -> None:
    pytest.importorskip("dlib")
    from streamanon.anonymize.align import align_faces, five_from_68
    from streamanon.io import read_image
    from streamanon.models.landmarks import Landmarker68

    img = read_image(data_dir / "identities" / "face_recognition_examples" / "obama.jpg").image
    st = Stages(PipelineConfig())
    dets = st.detector([img])[0]
    assert len(dets) >= 1
    lm68 = Landmarker68()(img, dets.xyxy[:1])
    assert lm68.shape == (1, 68, 2) and not np.isnan(lm68).any()
    # dlib's eye centres and mouth corners agree with CenterFace's five points
    err = np.linalg.norm(five_from_68(lm68[0]) - dets.landmarks[0], axis=1)
    eye_dist = float(np.linalg.norm(dets.landmarks[0, 1] - dets.landmarks[0, 0]))
    assert err.max() < 0.25 * eye_dist
    a = align_faces(dets[:1], 64, lm68)[0]
    assert not a.box_only and a.landmarks68 is not None
    np.testing.assert_allclose(a.landmarks5, TEMPLATE5 * 64, atol=4.0)
    # k-same / svd aligned on 68 points run end to end
    cfg = AnonymizeConfig(method="svd", landmarks="68", seed=1)
    (out,), _ = _run(cfg, [(img, dets[:1])])
    assert not np.array_equal(out, img)
