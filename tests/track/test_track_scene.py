"""SceneCutDetector."""

from __future__ import annotations

import numpy as np
import pytest

from streamanon.errors import ConfigError
from streamanon.track import SceneCutDetector


def _frame(value: int, shape: tuple[int, ...] = (72, 128, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def test_first_frame_is_a_cut_then_identical_frames_are_not() -> None:
    cut = SceneCutDetector(0.4)
    assert cut(_frame(10)) is True
    assert cut(_frame(10)) is False
    assert cut(_frame(10)) is False


def test_large_change_is_a_cut_small_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    cut = SceneCutDetector(0.2)
    # Structure survives the tiny thumbnail (pure pixel noise would average out).
    ramp = np.linspace(0, 255, 320)[None, :, None] * np.ones((180, 1, 3))
    base = ramp.astype(np.uint8)
    assert cut(base)
    noisy = np.clip(base.astype(int) + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8)
    assert not cut(noisy)
    assert cut(255 - noisy)


def test_threshold_boundary_uses_strict_greater() -> None:
    cut = SceneCutDetector(0.5)
    cut(_frame(0))
    assert not cut(_frame(127))  # 127/255 ~ 0.498
    assert not cut(_frame(0))  # the same change back
    cut2 = SceneCutDetector(0.49)
    cut2(_frame(0))
    assert cut2(_frame(127))


def test_resolution_change_and_gray_input_are_handled() -> None:
    cut = SceneCutDetector(0.3)
    assert cut(_frame(100, (1080, 1920, 3)))
    assert not cut(_frame(100, (36, 64, 3)))
    assert not cut(_frame(100, (36, 64)))


def test_reset_makes_next_frame_a_cut() -> None:
    cut = SceneCutDetector(0.3)
    cut(_frame(5))
    cut.reset()
    assert cut(_frame(5))


@pytest.mark.parametrize("threshold", [0.0, -1.0, 1.5])
def test_rejects_bad_threshold(threshold: float) -> None:
    with pytest.raises(ConfigError, match="scene_cut"):
        SceneCutDetector(threshold)


@pytest.mark.parametrize(
    "image",
    [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8), np.zeros((0, 10, 3), np.uint8)],
)
def test_rejects_bad_images(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 image"):
        SceneCutDetector(0.3)(image)
