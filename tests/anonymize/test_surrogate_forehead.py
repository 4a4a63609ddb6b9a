"""``clean_forehead``: a composite's averaged fringe and temple hair refilled with its own skin,
and ``composite_tile``, the cache through which ``paint`` takes cleaned composites."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import streamanon.anonymize.surrogate as surrogate
from streamanon.anonymize.surrogate_bank import CLEAN_FROM, clean_forehead, default_bank, with_forehead

SKIN = (200, 150, 120)
HAIR = (90, 40, 30)  # brown-red: what the colour match turned into red patches


def zones(shape: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Masks of a tile on ``shape``: the forehead band, a temple beside the brows, the brows,
    the eyes and the cheeks and mouth below the eyes (inside the jaw)."""
    p = np.asarray(shape[:68], np.float64)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    up = p[17:27].mean(0) - p[8]
    h = float(np.linalg.norm(up))
    above = ((xs - p[17:27, 0].mean()) * up[0] / h + (ys - p[17:27, 1].mean()) * up[1] / h) / h

    def hull(pts: np.ndarray) -> np.ndarray:
        m = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
        return m > 0

    lifted = hull(with_forehead(p, surrogate.FOREHEAD_REACH))
    inner = cv2.erode(lifted.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # off the hull's soft edge
    grow = lambda m: cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # noqa: E731
    brows = grow(hull(p[17:22]) | hull(p[22:27]))
    eyes = grow(hull(p[36:42]) | hull(p[42:48]))
    eye_line = p[36:48, 1].mean()
    return {
        "forehead": inner & (above > CLEAN_FROM + 0.1) & ~brows,
        "temple": inner & (xs < p[17, 0]) & (ys < eye_line - 2) & ~brows,
        "brows": hull(p[17:22]) | hull(p[22:27]),
        "eyes": hull(p[36:42]) | hull(p[42:48]),
        "below": hull(p[np.r_[2:15]]) & (ys > eye_line + 6) & ~eyes,
    }


def hairy_tile(shape: np.ndarray, size: int) -> np.ndarray:
    """A skin composite with dark brows and eyes, hair over the forehead and at the temples."""
    z = zones(shape, size)
    tile = np.full((size, size, 3), SKIN, np.uint8)
    rng = np.random.default_rng(0)
    tile = np.clip(tile + rng.normal(0, 3, tile.shape), 0, 255).astype(np.uint8)  # a little texture
    tile[z["brows"]] = (60, 40, 30)
    tile[z["eyes"]] = (30, 30, 40)
    ys = np.mgrid[0:size, 0:size][0]
    fringe = (z["forehead"] | z["temple"]) & (ys % 6 < 3)  # strands
    tile[fringe] = HAIR
    tile[z["temple"]] = HAIR
    return tile


def test_the_forehead_and_temples_become_the_composites_own_skin_brows_eyes_and_below_kept() -> None:
    bank = default_bank()
    size = bank.faces.shape[1]
    tile = hairy_tile(bank.shape, size)
    z = zones(bank.shape, size)
    out = clean_forehead(tile, bank.shape, surrogate.FOREHEAD_REACH)
    for name in ("forehead", "temple"):
        before = np.abs(tile[z[name]].astype(float) - SKIN).mean()
        after = np.abs(out[z[name]].astype(float) - SKIN).mean()
        assert before > 40 and after < 20, (name, before, after)
    for name in ("eyes", "below"):
        assert np.array_equal(out[z[name]], tile[z[name]]), name
    # the brows: only the soft edge of the refill touches their upper rim
    assert np.abs(out[z["brows"]].astype(int) - tile[z["brows"]]).mean() < 1.0


def test_the_shipped_composites_lose_their_fringe_streaks_and_temple_smudges() -> None:
    """On the shipped bank: the forehead's streaks (its spread of colour) and the temples'
    distance from the cheeks' skin both fall."""
    bank = default_bank()
    z = zones(bank.shape, bank.faces.shape[1])
    spread, smudge = [], []
    for face in bank.faces:
        out = clean_forehead(face, bank.shape, surrogate.FOREHEAD_REACH)
        skin = np.median(face[z["below"]].reshape(-1, 3), axis=0)
        spread.append([x[z["forehead"]].astype(float).std(0).mean() for x in (face, out)])
        smudge.append([np.abs(x[z["temple"]].astype(float) - skin).mean() for x in (face, out)])
    (s0, s1), (t0, t1) = np.mean(spread, 0), np.mean(smudge, 0)
    assert s1 < 0.5 * s0 and t1 < 0.5 * t0, (s0, s1, t0, t1)


def test_a_composite_with_no_skin_band_above_the_brows_is_left_as_it_is() -> None:
    """Brows whose middle points share one column leave no band to take the skin from."""
    bank = default_bank()
    tile = hairy_tile(bank.shape, bank.faces.shape[1])
    shape = bank.shape.copy()
    shape[24, 0] = shape[19, 0]
    assert np.array_equal(clean_forehead(tile, shape, surrogate.FOREHEAD_REACH), tile)
    flat = bank.shape.copy()
    flat[:, 1] = flat[0, 1]  # no brow-to-chin height at all
    assert np.array_equal(clean_forehead(tile, flat, surrogate.FOREHEAD_REACH), tile)


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(surrogate, "_CLEANED", {})


def test_composite_tile_cleans_once_per_bank_and_never_answers_for_another(
    fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = default_bank()
    first = surrogate.composite_tile(bank, 3)
    assert surrogate.composite_tile(bank, 3) is first
    assert np.array_equal(first, clean_forehead(bank.faces[3], bank.shape, surrogate.FOREHEAD_REACH))
    other = dataclasses.replace(bank, faces=bank.faces[::-1].copy())
    assert np.array_equal(surrogate.composite_tile(other, 3), surrogate.composite_tile(other, 3))
    assert not np.array_equal(surrogate.composite_tile(other, 3), first)
    monkeypatch.setattr(surrogate, "CLEAN", False)
    assert np.shares_memory(surrogate.composite_tile(bank, 3), bank.faces)  # the composite as it is
