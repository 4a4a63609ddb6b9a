from __future__ import annotations

import numpy as np
import pytest

from streamanon.anonymize import METHODS, create_anonymizer, mask_whole_frame
from streamanon.anonymize.mask import union_mask
from streamanon.config import AnonymizeConfig
from streamanon.errors import ConfigError
from streamanon.types import Detections


def noise(h: int = 200, w: int = 300) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def dets(*boxes: tuple[float, float, float, float], landmarks: np.ndarray | None = None) -> Detections:
    return Detections(np.array(boxes, np.float32), landmarks=landmarks)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_changes_inside_only(method: str, shape: str) -> None:
    img = noise()
    d = dets((100, 50, 160, 130))
    cfg = AnonymizeConfig(method=method, shape=shape)
    out = create_anonymizer(cfg).apply(img, d)
    assert out is not img and np.array_equal(img, noise()), "input must not be modified"
    m = union_mask(d, 300, 200, shape, cfg.mask_scale, cfg.mask_margin)
    assert np.array_equal(out[~m], img[~m])
    inside = np.abs(out[m].astype(int) - img[m]).mean()
    assert inside > 40, inside
    # A box mask covers the whole box; the 1.3x ellipse covers all but the box's corners.
    covered = m[50:130, 100:160].mean()
    assert covered == 1.0 if shape == "box" else covered > 0.93, covered


def test_solid_colour_and_whole_frame_mask() -> None:
    img = noise()
    out = create_anonymizer(
        AnonymizeConfig(method="solid", color=(10, 200, 30), shape="box", mask_scale=1.0, mask_margin=0)
    ).apply(img, dets((0, 0, 50, 40)))
    assert (out[0:40, 0:50] == (10, 200, 30)).all()
    assert (mask_whole_frame(img) == 0).all()


def test_blur_scales_with_face_size() -> None:
    """A big face is blurred as hard, relative to its size, as a small one."""
    rng = np.random.default_rng(1)
    small, big = rng.integers(0, 256, (20, 20, 3), np.uint8), rng.integers(0, 256, (200, 200, 3), np.uint8)
    an = create_anonymizer(AnonymizeConfig(method="blur", shape="box", mask_scale=1.0, mask_margin=0))
    for img, n in ((small, 20), (big, 200)):
        out = an.apply(img, dets((0, 0, n, n)))
        # Remaining detail: std of the blurred region relative to the original's.
        assert out.std() < 0.25 * img.std()


def test_pixelate_block_count() -> None:
    img = noise(256, 256)
    out = create_anonymizer(
        AnonymizeConfig(method="pixelate", pixel_blocks=8, shape="box", mask_scale=1.0, mask_margin=0)
    ).apply(img, dets((0, 0, 256, 256)))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 64
    assert len(np.unique(out[:32, :32].reshape(-1, 3), axis=0)) == 1


def test_ellipse_follows_head_roll() -> None:
    # Landmarks of a face rolled by ~40 degrees: eyes on a slanted line.
    lms = np.array([[[110, 70], [140, 95], [120, 100], [105, 115], [125, 125]]], np.float32)
    d = dets((95, 55, 160, 140), landmarks=lms)
    m = union_mask(d, 300, 200, "ellipse", 1.3)
    assert m[55:140, 95:160].mean() > 0.95


def test_unknown_method_lists_valid_names() -> None:
    assert {"blur", "pixelate", "solid", "dp-pixelate", "k-same", "svd"} <= set(METHODS)
    with pytest.raises(ConfigError, match="choose from: " + ", ".join(sorted(METHODS))):
        create_anonymizer(AnonymizeConfig(method="nope"))
    with pytest.raises(ConfigError):
        create_anonymizer(AnonymizeConfig(method="none"))  # eval-only control
    assert (
        create_anonymizer(AnonymizeConfig(method="none"), allow_eval_only=True).apply(noise(), dets((0, 0, 9, 9))).sum()
        == noise().sum()
    )


def test_faces_at_the_border_and_empty_boxes() -> None:
    img = noise()
    out = create_anonymizer(AnonymizeConfig()).apply(
        img, dets((-30, -20, 40, 30), (290, 190, 350, 260), (50, 50, 50, 50))
    )
    assert out.shape == img.shape
    assert not np.array_equal(out[0:20, 0:30], img[0:20, 0:30])
