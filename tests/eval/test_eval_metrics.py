"""Quality metrics and detection scoring on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from streamanon.eval.metrics import (
    PSNR_IDENTICAL,
    ImageDetections,
    average_precision,
    evaluate_detections,
    ms_ssim,
    ms_ssim_scales,
    psnr,
    quality,
    ssim,
)


def _pair(seed: int = 0, shape: tuple[int, int] = (120, 160), noise: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_known_value_and_identical() -> None:
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    assert psnr(a, b) == PSNR_IDENTICAL
    b[:] = 110  # MSE 100 -> 10*log10(255^2/100)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100))


def test_ssim_matches_scikit_image() -> None:
    skm = pytest.importorskip("skimage.metrics")
    a, b = _pair()
    luma = lambda x: x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114  # noqa: E731
    ref = skm.structural_similarity(
        luma(a.astype(float)),
        luma(b.astype(float)),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)


def test_ms_ssim_orders_by_distortion_and_adapts_scales() -> None:
    a, b_small = _pair(noise=5)
    _, b_big = _pair(noise=60)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert 1.0 > ms_ssim(a, b_small) > ms_ssim(a, b_big) > 0.0  # type: ignore[operator]
    assert ms_ssim_scales(150, 150) == 4  # 150 -> 75 -> 37 -> 18 (-> 9 would be < 11 px)
    assert ms_ssim_scales(512, 512) == 5
    assert ms_ssim_scales(12, 40) == 1


def test_outside_region_ignores_changes_inside_mask() -> None:
    a, _ = _pair(shape=(96, 96))
    b = a.copy()
    mask = np.zeros((96, 96), bool)
    mask[30:60, 30:60] = True
    b[mask] = 0
    q = quality(a, b, mask)
    assert q["psnr"] is not None and q["psnr"] < 30
    assert q["ssim"] is not None and q["ssim"] < 0.95
    assert q["psnr_outside"] == PSNR_IDENTICAL
    assert q["ssim_outside"] == pytest.approx(1.0)
    assert q["ms_ssim_outside"] == pytest.approx(1.0)
    b[0, 0] = 255 - b[0, 0]  # a change outside the mask is seen
    assert quality(a, b, mask)["psnr_outside"] < PSNR_IDENTICAL  # type: ignore[operator]
    assert psnr(a, b, np.zeros((96, 96), bool)) is None


def _img(
    gt: list[list[float]], dets: list[list[float]], scores: list[float], ignore: list[bool] | None = None
) -> ImageDetections:
    return ImageDetections(
        np.array(gt, np.float32).reshape(-1, 4),
        np.array(ignore if ignore is not None else [False] * len(gt), bool),
        np.array(dets, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
    )


def test_average_precision_known_curve() -> None:
    # TP (0.9), FP (0.8), TP (0.7) on 2 faces: P/R = (1, .5), (.5, .5), (.667, 1) -> AP = .5 + .5 * 2/3
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.5], [False], 0) is None


def test_evaluate_detections_thresholds_ignore_and_buckets() -> None:
    big, small, ign = [0, 0, 100, 100], [200, 200, 210, 210], [300, 300, 340, 340]
    img = _img(
        [big, small, ign],
        [[2, 2, 100, 100], [302, 302, 340, 340], [500, 500, 540, 540], [201, 201, 210, 210]],
        [0.9, 0.8, 0.6, 0.2],
        ignore=[False, False, True],
    )
    res = evaluate_detections([img], [0.3, 0.1])
    at3, at1 = res["overall"]["at"]["0.3"], res["overall"]["at"]["0.1"]
    assert res["overall"]["faces"] == 2  # the ignored face is not counted
    # At 0.3: the big face is found, the ignored face's hit is neither TP nor FP, one FP.
    assert (at3["tp"], at3["fp"], at3["recall"], at3["precision"]) == (1, 1, 0.5, 0.5)
    assert (at1["tp"], at1["fp"], at1["recall"]) == (2, 1, 1.0)
    assert res["buckets"]["<16"]["faces"] == 1 and res["buckets"]["<16"]["at"]["0.3"]["recall"] == 0.0
    assert res["buckets"]["<16"]["at"]["0.1"]["recall"] == 1.0
    assert res["buckets"]["64-128"]["at"]["0.3"]["recall"] == 1.0
    assert res["buckets"][">=128"]["faces"] == 0 and res["buckets"][">=128"]["ap"] is None


def test_low_iou_is_a_miss() -> None:
    res = evaluate_detections([_img([[0, 0, 100, 100]], [[60, 60, 160, 160]], [0.9])], [0.5])
    assert res["overall"]["at"]["0.5"]["tp"] == 0 and res["overall"]["at"]["0.5"]["fp"] == 1
