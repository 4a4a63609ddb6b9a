"""Live mode picks the largest detector input that keeps up with the feed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from streamanon.config import DetectConfig
from streamanon.detect.centerface import network_size
from streamanon.live.detsize import candidate_sizes, fit_det_size
from streamanon.types import Detections


class CostlyDetector:
    """Takes ``ms_per_mpx`` milliseconds per million network-input pixels, like a CNN."""

    def __init__(self, ms_per_mpx: float, det_size: int | None = None) -> None:
        self.config = DetectConfig(det_size=det_size)
        self.ms_per_mpx = ms_per_mpx
        self.calls: list[tuple[int, int]] = []

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        h0, w0 = images[0].shape[:2]
        w, h = network_size(w0, h0, self.config.det_size)
        self.calls.append((w, h))
        time.sleep(self.ms_per_mpx * w * h / 1e6 / 1000)
        return [Detections.empty() for _ in images]


def test_candidates_start_at_native_capped_and_stop_at_640() -> None:
    assert candidate_sizes(1280) == [1280, 1120, 960, 800, 640]
    assert candidate_sizes(3840) == [1920, 1600, 1280, 1120, 960, 800, 640]
    assert candidate_sizes(640) == [640]
    assert candidate_sizes(320) == [320]


def test_fast_detector_keeps_native_size() -> None:
    det = CostlyDetector(ms_per_mpx=5)  # 1280x736: ~5 ms, far under 32 ms at 25 fps
    choice = fit_det_size(det, 1280, 720, 25.0)
    assert choice.det_size is None and det.config.det_size is None
    assert list(choice.timings_ms) == [1280]  # stops at the first size that fits


def test_slow_detector_gets_the_largest_size_that_fits(caplog: pytest.LogCaptureFixture) -> None:
    # 100 ms per Mpx: 1280x736 ~94 ms, 960x544 ~52, 800x448 ~36, 640x352 ~23; budget 0.8 * 40 = 32 ms
    det = CostlyDetector(ms_per_mpx=100)
    with caplog.at_level(logging.WARNING, logger="streamanon.live.detsize"):
        choice = fit_det_size(det, 1280, 720, 25.0)
    assert choice.det_size == 640 and det.config.det_size == 640
    assert choice.timings_ms[1280] > choice.budget_ms >= choice.timings_ms[640]
    assert "--det-size 1280" in caplog.text  # tells the user how to get native size back
    # At 12.5 fps the budget doubles (64 ms): 960 fits.
    det = CostlyDetector(ms_per_mpx=100)
    assert fit_det_size(det, 1280, 720, 12.5).det_size == 960


def test_too_slow_even_at_the_smallest_size_uses_it_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    det = CostlyDetector(ms_per_mpx=400)
    with caplog.at_level(logging.WARNING, logger="streamanon.live.detsize"):
        choice = fit_det_size(det, 1280, 720, 25.0)
    assert choice.det_size == 640
    assert "frames will be dropped" in caplog.text


def test_a_detector_without_a_config_is_left_alone() -> None:
    calls: list[int] = []

    def fake(images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        calls.append(1)
        return [Detections.empty() for _ in images]

    choice = fit_det_size(fake, 1280, 720, 25.0)
    assert choice.det_size is None and not calls
    assert np.isfinite(choice.budget_ms)
