"""``--method surrogate`` in its scene: the composite blurred to the surroundings' focus and its
chroma bounded by theirs and by the light (dark, defocused footage read as painted), read from
outside every face mask only; a sharp, well-lit photo unchanged."""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np
import pytest
from test_surrogate import FakeLandmarker, dets, make_bank

from streamanon.anonymize import surrogate
from streamanon.anonymize.mask import face_regions, union_mask
from streamanon.anonymize.surrogate import Scene, SurrogateAnonymizer, scene_around
from streamanon.anonymize.surrogate_bank import SurrogateBank
from streamanon.config import AnonymizeConfig

BOX = [110, 70, 190, 170]


def rects(
    h: int, w: int, seed: int, n: int, sides: tuple[int, int], colours: tuple[Any, Any], mono: bool = False
) -> np.ndarray:
    """``n`` filled rectangles (sides in ``sides``) on their mean colour: step edges. Each
    channel drawn between ``colours``, or (``mono``) one share of the way for all three."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), np.mean(colours, axis=0), np.uint8)
    lo, hi = np.asarray(colours[0]), np.asarray(colours[1])
    for _ in range(n):
        x, y = (int(v) for v in rng.integers(0, (w, h)))
        dx, dy = (int(v) for v in rng.integers(*sides, 2))
        colour = tuple(int(v) for v in lo + rng.random(1 if mono else 3) * (hi - lo))
        cv2.rectangle(img, (x, y), (x + dx, y + dy), colour, -1)
    return img


def scene(
    blur: float = 0.0, colours: tuple[Any, Any] = ((40, 40, 40), (220, 220, 220)), mono: bool = False
) -> np.ndarray:
    img = rects(240, 320, 1, 120, (15, 50), colours, mono)
    return cv2.GaussianBlur(img, (0, 0), blur) if blur else img


def rect_bank() -> SurrogateBank:
    """Composites of sharp rectangles (edges like the scene's, at the face's scale)."""
    b = make_bank(8)
    faces = np.stack([rects(64, 64, 10 + i, 25, (6, 20), ((40, 40, 40), (220, 220, 220))) for i in range(8)])
    return SurrogateBank(faces, b.shape, b.triangles, b.gender, b.age_band, b.min_dlib, b.min_faceres, b.k, "test")


def painted_bank() -> SurrogateBank:
    """Skin-coloured composites with saturated blue eyes and red lips at the bank's landmarks."""
    b = make_bank(8)
    face = np.zeros((64, 64, 3), np.uint8)
    face[:] = (205, 160, 140)
    p = np.round(b.shape).astype(np.int32)
    for eye in (p[36:42], p[42:48]):
        cv2.fillConvexPoly(face, cv2.convexHull(eye), (40, 70, 200))
    cv2.fillConvexPoly(face, cv2.convexHull(p[48:60]), (200, 30, 40))
    faces = np.repeat(face[None], 8, axis=0)
    return SurrogateBank(faces, b.shape, b.triangles, b.gender, b.age_band, b.min_dlib, b.min_faceres, b.k, "test")


def paint(img: np.ndarray, bank: SurrogateBank | None = None) -> np.ndarray:
    a = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=3), bank or make_bank(8), FakeLandmarker())
    out = a.apply(img, dets([BOX], [1]))
    assert a.served == {"surrogate": 1}
    return out


def sharpness(img: np.ndarray, where: np.ndarray) -> float:
    """Gradient energy after a 1 px blur over that after 2 px: 2 for sharp edges, toward 1 blurred."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def energy(s: float) -> float:
        b = cv2.GaussianBlur(g, (0, 0), s)
        gx, gy = cv2.Sobel(b, cv2.CV_32F, 1, 0), cv2.Sobel(b, cv2.CV_32F, 0, 1)
        return float((gx * gx + gy * gy)[where].mean())

    return energy(1.0) / energy(2.0)


def inner_face() -> np.ndarray:
    """The painted inner face (brows to mouth) of ``BOX``."""
    pts = FakeLandmarker()(None, np.array([BOX], np.float32))[0]
    m = np.zeros((240, 320), np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts[17:68]).astype(np.int32)), 1)
    return m > 0


def surroundings() -> np.ndarray:
    mask = union_mask(dets([BOX], [1]), 320, 240, "ellipse", 1.3, 2.0)
    ring = ~cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    ring[:10] = ring[-10:] = False
    ring[:, :10] = ring[:, -10:] = False
    return ring


def chroma_spread(img: np.ndarray, where: np.ndarray) -> float:
    ab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)[where][:, 1:].astype(np.float32)
    return float(np.percentile(np.linalg.norm(ab - np.median(ab, axis=0), axis=1), 90))


@pytest.mark.parametrize("blur", [2.0, 3.0, 4.0])
def test_defocused_scene_blurs_the_composite(blur: float) -> None:
    """In a scene blurred by ``blur`` px the painted face (sharp composites) loses its fine
    detail as the scene did: its sharpness is within 1.6 times the scene's (in what it has
    above a flat picture's 1); unblurred it kept 5 times the scene's."""
    img = scene(blur)
    out = paint(img, rect_bank())
    face = np.zeros((240, 320), bool)
    face[100:150, 125:175] = True
    painted, around = sharpness(out, face), sharpness(out, surroundings())
    assert around < 1.4  # the scene is soft
    assert painted - 1 <= 1.6 * (around - 1)
    assert painted > 1.05  # blurred to the scene, not wiped flat


def test_scene_sharpness_falls_with_the_blur_and_is_none_when_flat() -> None:
    faces = union_mask(dets([BOX], [1]), 320, 240, "ellipse", 1.3, 2.0)
    region = face_regions(dets([BOX], [1]), 320, 240, "ellipse", 1.3, 2.0)[0]
    ratios = []
    for blur in (0.0, 1.0, 2.0, 4.0):
        s = scene_around(scene(blur), faces, region, 1)
        assert s.sharpness is not None
        ratios.append(s.sharpness)
    assert ratios[0] > 1.8 and all(a > b for a, b in itertools.pairwise(ratios)) and ratios[-1] < 1.25
    flat = scene_around(np.full((240, 320, 3), 90, np.uint8), faces, region, 1)
    assert flat.sharpness is None and flat.chroma is not None and flat.chroma >= 60  # grey: no chroma limit


def test_scene_reads_no_face_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two blurred frames that differ only inside the face masks: the same scene, and (the
    colour statistics of the face fixed) the same output."""
    d = dets([BOX, [230, 40, 300, 120]], [1, 2])
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    a_img = scene(3.0)
    b_img = a_img.copy()
    b_img[mask] = np.random.default_rng(5).integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)
    for region in face_regions(d, 320, 240, "ellipse", 1.3, 2.0):
        for a in (1, 2, 3):
            assert scene_around(a_img, mask, region, a) == scene_around(b_img, mask, region, a)
    monkeypatch.setattr(surrogate, "match_colour", lambda face, *args, **kwargs: face)
    anon = [
        SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=3), rect_bank(), FakeLandmarker()) for _ in "ab"
    ]
    assert np.array_equal(anon[0].apply(a_img, d), anon[1].apply(b_img, d))


def test_warm_desaturated_scene_bounds_the_chroma() -> None:
    """A warm, washed-out, well-lit scene: the composite's blue eyes and red lips are toned
    down to within twice the surroundings' chroma spread (they kept theirs before)."""
    img = scene(0.0, ((150, 120, 95), (200, 168, 140)), mono=True)
    out = paint(img, painted_bank())
    around = chroma_spread(img, surroundings())
    assert around < 6
    assert chroma_spread(out, inner_face()) <= 2 * around + 1


@pytest.mark.parametrize("index", [0, 5, 11])
def test_dim_face_dims_the_contrast_and_chroma(index: int) -> None:
    """A face in dim light (Lab L ~ 10 of 255): the shipped composite's lightness spread and
    chroma fall with the light (before: the spread's clip at 0.67 and the full chroma left a
    bright-eyed, red-lipped face, 5-95% lightness range 35-40 and chroma spread 8-9.5); in
    good light nothing changes."""
    from streamanon.anonymize.surrogate import match_colour
    from streamanon.anonymize.surrogate_bank import default_bank

    bank = default_bank()
    face = bank.faces[index]
    m = np.zeros(face.shape[:2], np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(bank.shape[17:68]).astype(np.int32)), 1)
    inside = m > 0
    rng = np.random.default_rng(0)
    dark = np.clip(np.array([22, 13, 9]) + rng.integers(-3, 4, face.shape), 0, 255).astype(np.uint8)
    out = match_colour(face, inside, dark, False)
    light = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)[inside][:, 0].astype(np.float32)
    assert np.percentile(light, 95) - np.percentile(light, 5) <= 20
    assert chroma_spread(out, inside) <= 4
    lit = np.clip(np.array([200, 150, 130]) + rng.integers(-3, 4, face.shape), 0, 255).astype(np.uint8)
    assert abs(chroma_spread(match_colour(face, inside, lit, False), inside) - chroma_spread(face, inside)) < 0.5


def test_dim_defocused_greyscale_stays_grey() -> None:
    grey = cv2.cvtColor(scene(3.0, ((10, 10, 10), (40, 40, 40))), cv2.COLOR_RGB2GRAY)
    out = paint(np.repeat(grey[:, :, None], 3, axis=2), painted_bank())
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()


def grey_wall() -> np.ndarray:
    """Neutral grey with a little sensor noise per channel (a colour picture, not greyscale)."""
    wall = np.clip(128 + np.random.default_rng(2).normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    from streamanon.anonymize.generate import is_grey

    assert not is_grey(wall)
    return wall


@pytest.mark.parametrize(
    ("bank", "kind"), [(rect_bank, "colourful"), (painted_bank, "colourful"), (painted_bank, "grey wall")]
)
def test_sharp_well_lit_scene_is_unchanged(bank: Any, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sharp, colourful, well-lit scene, and a plain grey wall (no colour cast: it says
    nothing of the light): neither the focus nor the chroma bound applies (the output equals
    the one without any scene statistics)."""
    img = scene(0.0, ((30, 30, 30), (250, 250, 250))) if kind == "colourful" else grey_wall()
    with_scene = paint(img, bank())
    monkeypatch.setattr(surrogate, "scene_around", lambda *args: Scene(None, None))
    assert np.array_equal(paint(img, bank()), with_scene)


def test_a_tracks_blur_moves_toward_each_frames_measure() -> None:
    """A track painted in a blurred scene, then in a sharp one: the second frame keeps
    1 - ``FOCUS_SMOOTH`` of the first frame's blur (a measure that jumps between frames does
    not flicker), where a new track in the sharp scene gets none."""
    from streamanon.anonymize.base import AnonymizerSession, FrameInfo

    seen: list[float] = []
    real = surrogate.match_focus

    def spy(*args: Any) -> Any:
        out = real(*args)
        seen.append(out[1])
        return out

    face = np.zeros((240, 320), bool)
    face[100:150, 125:175] = True
    d = dets([BOX], [1])
    a = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=3), rect_bank(), FakeLandmarker())
    session = AnonymizerSession(a)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(surrogate, "match_focus", spy)
        session(scene(3.0), d, FrameInfo(0))
        tracked = session(scene(0.0), d, FrameInfo(1))
    assert seen[0] > 1.0 and seen[1] == pytest.approx((1 - surrogate.FOCUS_SMOOTH) * seen[0], rel=1e-6)
    fresh = paint(scene(0.0), rect_bank())
    assert sharpness(tracked, face) < sharpness(fresh, face) - 0.1


def face_photo(lips: tuple[int, int, int], eyes: tuple[int, int, int]) -> np.ndarray:
    """A well-lit skin-coloured face at ``BOX`` on a grey wall, its lips and eyes (at the
    fake landmarker's points) in the given colours."""
    img = grey_wall()
    pts = np.round(FakeLandmarker()(None, np.array([BOX], np.float32))[0]).astype(np.int32)
    cv2.ellipse(img, ((150, 125), (84, 110), 0), (205, 160, 140), -1)
    img = np.clip(img.astype(int) + np.random.default_rng(4).integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    for eye in (pts[36:42], pts[42:48]):
        cv2.fillConvexPoly(img, cv2.convexHull(eye), eyes)
    cv2.fillConvexPoly(img, cv2.convexHull(pts[48:60]), lips)
    return img


def feature_chroma(img: np.ndarray) -> tuple[float, float]:
    """How far the lips' (less the inner mouth) and the eyes' median chroma lie from the
    skin's (Lab), at the fake landmarker's points."""
    pts = np.round(FakeLandmarker()(None, np.array([BOX], np.float32))[0]).astype(np.int32)
    lips, eyes = np.zeros(img.shape[:2], np.uint8), np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(lips, [pts[48:60]], 1)
    cv2.fillPoly(lips, [pts[60:68]], 0)
    cv2.fillPoly(eyes, [pts[36:42], pts[42:48]], 1)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)[:, :, 1:].astype(np.float32)
    skin = inner_face() & (lips == 0) & (eyes == 0)
    s = np.median(lab[skin], axis=0)
    lip = float(np.linalg.norm(np.median(lab[lips > 0], axis=0) - s))
    eye = float(np.linalg.norm(np.median(lab[eyes > 0], axis=0) - s))
    return lip, eye


def test_lipstick_and_blue_eyes_take_the_originals_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """A composite with red lips and blue eyes painted over a face with pale lips and dark
    eyes: the painted lips and eyes stand out from the skin as much as the original's do
    (before: the composite's own, 3-6 times more)."""
    img = face_photo(lips=(200, 145, 130), eyes=(95, 80, 75))
    lip_t, eye_t = feature_chroma(img)
    lip, eye = feature_chroma(paint(img, painted_bank()))
    assert abs(lip - lip_t) <= 3 and abs(eye - eye_t) <= 3
    monkeypatch.setattr(surrogate, "FEATURES", ())  # the composite's own colours
    lip_c, eye_c = feature_chroma(paint(img, painted_bank()))
    assert lip_c > lip_t + 15 and eye_c > eye_t + 15


def test_feature_colour_keeps_the_skin_and_a_lipstick_original() -> None:
    """``_match_features`` moves only the features: the skin's chroma is unchanged, and an
    original with stronger lipstick than the composite's gets stronger lips (up to
    ``FEATURE_GAIN``); a feature under ``FEATURE_MIN`` pixels is left as it is."""
    from streamanon.anonymize.surrogate import FEATURE_GAIN, _match_features

    h = w = 60
    inside = np.zeros((h, w), bool)
    inside[5:55, 5:55] = True
    lips = np.zeros((h, w), bool)
    lips[40:46, 20:40] = True
    tiny = np.zeros((h, w), bool)
    tiny[10:12, 10:12] = True
    ab = np.full((h, w, 2), (140, 140), np.uint8)
    ab[lips] = (150, 140)  # the composite: lips 10 from the skin
    ab[tiny] = (170, 170)
    t = np.zeros((h, w, 3), np.uint8)
    t[:, :, 0] = 150
    t[:, :, 1:] = (135, 145)
    t[lips, 1:] = (165, 145)  # the original: lips 30 from its skin
    t[tiny, 1:] = (135, 145)
    out = _match_features(ab, t, inside, ([lips, tiny], [lips, tiny]), 60.0)
    skin = inside & ~lips & ~tiny
    far = ~cv2.dilate(lips.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & skin
    assert (out[far] == ab[far]).all()
    assert abs(float(np.median(out[lips][:, 0])) - (140 + 10 * FEATURE_GAIN)) <= 1
    assert (out[tiny] == ab[tiny]).all()


def test_lip_region_leaves_out_the_open_mouth() -> None:
    """The lips are the outer lip line less the inner one: an open mouth's teeth and tongue
    do not set the lips' colour; the eyes are their own polygons."""
    from streamanon.anonymize.surrogate import feature_masks

    pts = FakeLandmarker()(None, np.array([BOX], np.float32))[0].copy()
    pts[61:64, 1] -= 3  # the mouth opened: the inner upper lip up, the inner lower lip down
    pts[65:68, 1] += 3
    lips, left, right = feature_masks(pts, (100, 60), (120, 100))
    mouth = np.zeros((120, 100), np.uint8)
    cv2.fillPoly(mouth, [np.round(pts[60:68] - (100, 60)).astype(np.int32)], 1)
    inner = cv2.erode(mouth, np.ones((3, 3), np.uint8)) > 0
    assert inner.sum() > 20 and not (lips & inner).any()
    assert lips.sum() > 20 and left.sum() > 5 and right.sum() > 5 and not (left & right).any()
