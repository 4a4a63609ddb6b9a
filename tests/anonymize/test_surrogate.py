"""``--method surrogate``: the piecewise-affine warp, one composite per track, fail-closed
fallbacks, greyscale, and the bank's "nobody" check."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

import numpy as np
import pytest

from streamanon.anonymize.mask import union_mask
from streamanon.anonymize.surrogate import SHAPE_PULL, SurrogateAnonymizer, pulled
from streamanon.anonymize.surrogate_bank import (
    BankPhotos,
    SurrogateBank,
    _Photo,
    build_bank,
    piecewise_affine,
    triangulate,
    with_forehead,
)
from streamanon.config import AnonymizeConfig
from streamanon.errors import ConfigError
from streamanon.types import Detections


def face68(cx: float = 0.0, cy: float = 0.0, s: float = 1.0) -> np.ndarray:
    """A synthetic 68-point face (iBUG layout, unit size ~1) at (cx, cy), scaled by ``s``."""
    t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    jaw = np.c_[0.45 * np.cos(t), 0.05 + 0.5 * np.sin(t)][::-1] * [-1, 1]
    brows = np.c_[np.r_[np.linspace(-0.38, -0.08, 5), np.linspace(0.08, 0.38, 5)], np.full(10, -0.22)]
    nose = np.r_[np.c_[np.zeros(4), np.linspace(-0.12, 0.12, 4)], np.c_[np.linspace(-0.1, 0.1, 5), np.full(5, 0.18)]]

    def eye(x: float) -> np.ndarray:
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        return np.c_[x + 0.08 * np.cos(a + np.pi), -0.1 + 0.03 * np.sin(a + np.pi)]

    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    mouth_out = np.c_[0.18 * np.cos(a + np.pi), 0.32 + 0.06 * np.sin(a + np.pi)]
    b = np.linspace(0, 2 * np.pi, 9)[:-1]
    mouth_in = np.c_[0.12 * np.cos(b + np.pi), 0.32 + 0.03 * np.sin(b + np.pi)]
    p = np.vstack([jaw, brows, nose, eye(-0.22), eye(0.22), mouth_out, mouth_in])
    assert p.shape == (68, 2)
    return (p * s + [cx, cy]).astype(np.float32)


def make_bank(n: int = 8, size: int = 64) -> SurrogateBank:
    shape = with_forehead(face68(size / 2, size / 2 + 4, size * 0.8))
    rng = np.random.default_rng(0)
    faces = np.stack([np.full((size, size, 3), 40 + (180 * i) // max(1, n - 1), np.uint8) for i in range(n)])
    faces = np.clip(faces.astype(int) + rng.integers(-20, 20, faces.shape), 0, 255).astype(np.uint8)
    return SurrogateBank(
        faces,
        shape,
        triangulate(shape),
        np.array(["female"] * n),
        np.array(["young"] * n),
        np.ones(n, np.float32),
        np.ones(n, np.float32),
        5,
        "test",
    )


class FakeLandmarker:
    """Returns the synthetic face fitted to each box (or NaN when ``fail``)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def __call__(self, image: Any, boxes: np.ndarray) -> np.ndarray:
        out = np.full((len(boxes), 68, 2), np.nan, np.float32)
        if not self.fail:
            for i, (x0, y0, x1, y1) in enumerate(boxes):
                out[i] = face68((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.9)
        return out


def dets(boxes: list[list[float]], tracks: list[int], score: float = 0.9) -> Detections:
    from streamanon.anonymize.align import five_from_68

    five = np.stack([five_from_68(FakeLandmarker()(None, np.array([b], np.float32))[0]) for b in boxes])
    return Detections(
        np.array(boxes, np.float32), score=np.full(len(boxes), score), landmarks=five, track_id=np.array(tracks)
    )


def noise_image(h: int = 240, w: int = 320, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def anonymiser(seed: int | None = 3, fail: bool = False, n: int = 8) -> SurrogateAnonymizer:
    return SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=seed), make_bank(n), FakeLandmarker(fail))


def test_piecewise_affine_identity_and_shift() -> None:
    img = noise_image(64, 64)
    pts = with_forehead(face68(32, 36, 50))
    tri = triangulate(pts)
    same, cov = piecewise_affine(img, pts, pts, tri, (64, 64))
    assert cov.sum() > 0.4 * 64 * 64
    assert np.abs(same[cov].astype(int) - img[cov]).max() <= 1
    moved, cov2 = piecewise_affine(img, pts, pts + np.float32([5, 3]), tri, (64, 64))
    inner = cov2.copy()
    inner[:, :8] = inner[:8, :] = False
    ys, xs = np.nonzero(inner & np.roll(np.roll(cov, 3, 0), 5, 1))
    assert np.abs(moved[ys, xs].astype(int) - img[ys - 3, xs - 5]).max() <= 1


def test_pull_moves_inner_points_only() -> None:
    p = face68(100, 100, 80)
    target = with_forehead(face68(0, 0, 1) * [1.2, 0.9])
    q = pulled(p, target, 0.5)
    assert np.allclose(q[:17], p[:17])  # the jaw keeps the head's outline
    assert not np.allclose(q[17:], p[17:])
    assert np.allclose(pulled(p, target, 0.0), p)
    assert 0 < SHAPE_PULL <= 1


def test_one_surrogate_per_track_different_between_tracks() -> None:
    a = anonymiser(n=64)
    from streamanon.anonymize.base import AnonymizerSession, FrameInfo

    session = AnonymizerSession(a)
    boxes = [[20 + 28 * i, 60, 44 + 28 * i, 84] for i in range(10)]
    img = noise_image()
    for f in range(3):
        session(img, dets(boxes, list(range(10))), FrameInfo(f))
        if f == 0:
            first = [a.track_surrogate(t) for t in range(10)]
    assert [a.track_surrogate(t) for t in range(10)] == first  # fixed for the track's life
    assert len(set(first)) > 1  # tracks get different composites
    b = anonymiser(n=64)
    session_b = AnonymizerSession(b)
    session_b(img, dets(boxes, list(range(10))), FrameInfo(0))
    assert [b.track_surrogate(t) for t in range(10)] == first  # the seed is the run's secret


def test_paints_inside_the_mask_only_and_leaves_nothing_raw() -> None:
    a = anonymiser()
    img = noise_image()
    d = dets([[100, 60, 200, 180]], [1])
    out = a.apply(img, d)
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    assert np.array_equal(out[~mask], img[~mask])
    same = (out[mask] == img[mask]).all(-1)
    assert same.mean() < 0.05  # noise never survives the blur and the paint
    assert a.served["surrogate"] == 1 and not a.reasons


@pytest.mark.parametrize(
    ("kind", "reason"), [("score", "low-score"), ("fit", "no-landmarks"), ("small", "small"), ("warp", "warp-failed")]
)
def test_fallbacks_blur_and_are_counted(kind: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = anonymiser(fail=kind == "fit")
    if kind == "warp":

        def broken(*args: Any, **kwargs: Any) -> None:
            raise ValueError("boom")

        monkeypatch.setattr("streamanon.anonymize.surrogate.paint", broken)
    box = [100, 60, 112, 72] if kind == "small" else [100, 60, 200, 180]
    d = dets([box], [1], score=0.3 if kind == "score" else 0.9)
    img = noise_image()
    out = a.apply(img, d)
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    assert (out[mask] == img[mask]).all(-1).mean() < 0.05  # blurred, not raw
    assert a.reasons == {reason: 1}
    assert a.report()["fallback"]["faces"] == 1


def test_greyscale_in_greyscale_out() -> None:
    """At many grey levels (Lab's grey comes back from RGB within a level per channel: the
    neck's tone is made grey again)."""
    for seed in range(1, 13):
        grey = (noise_image(seed=seed)[:, :, :1].repeat(3, axis=2) // 4 + 40 + 8 * seed).astype(np.uint8)
        out = anonymiser().apply(grey, dets([[100, 60, 200, 180]], [1]))
        assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all(), seed


class _ConstRec:
    """A recogniser whose every vector is ``v`` (so a composite sits on a bank person)."""

    def __init__(self, v: np.ndarray) -> None:
        self.v = v

    def locate(self, image: Any, box: Any) -> Any:
        return box

    def embed(self, image: Any, faces: Any) -> np.ndarray:
        return self.v[None]

    def analyse(self, image: Any, faces: Any) -> list[Any]:
        from streamanon.models.faceres import FaceAttributes

        return [FaceAttributes(self.v, 30.0, 0.1)]


def test_builder_refuses_composites_near_a_bank_person() -> None:
    bank = make_bank(6)
    v = np.ones(4, np.float32) / 2
    photos = [_Photo(f"p{i}", bank.faces[i], v if i == 0 else -v, v if i == 0 else -v, 0.1, 30.0) for i in range(6)]
    near = BankPhotos(photos, bank.shape, bank.triangles, _ConstRec(v), _ConstRec(v))
    with pytest.raises(ConfigError, match="within a threshold"):
        build_bank(near, count=3, k=5, tries=2)
    far = BankPhotos(
        photos, bank.shape, bank.triangles, _ConstRec(np.r_[v[:2], -v[2:]]), _ConstRec(np.r_[v[:2], -v[2:]])
    )
    built = build_bank(far, count=3, k=5, tries=2)
    assert len(built) == 3 and built.min_dlib.min() >= 0.6


def test_parts_composite_takes_each_part_from_its_own_face() -> None:
    from streamanon.anonymize.surrogate_bank import PARTS, parts_composite

    bank = make_bank(2, 96)
    base = np.full((96, 96, 3), 128, np.uint8)
    rng = np.random.default_rng(1)
    parts = [np.clip(128 + rng.integers(-40, 40, (96, 96, 3)), 0, 255).astype(np.uint8) for _ in PARTS]
    out = parts_composite([base, *parts], bank.shape)
    shape = np.round(bank.shape).astype(int)
    for idx in (shape[27:36].mean(0).round().astype(int), shape[48:68].mean(0).round().astype(int)):
        x, y = idx
        assert out[y - 1 : y + 2, x - 1 : x + 2].std() > 5  # the part's texture, not the flat base
    # far from every part (the jaw): the base, untouched; the forehead: the mean of all
    for x, y in (shape[3], shape[13]):
        assert np.abs(out[y, x].astype(int) - 128).max() <= 1
    x, y = shape[68 + 5]
    mean = np.mean([base, *parts], axis=0)
    assert np.abs(out[y, x].astype(float) - mean[y, x]).max() <= 3


def test_parts_bank_counts_its_persons_and_refuses_one_per_part() -> None:
    bank = make_bank(8)
    v = np.ones(4, np.float32) / 2
    photos = [_Photo(f"p{i}", bank.faces[i], -v, -v, 0.1, 30.0) for i in range(8)]
    far = BankPhotos(
        photos, bank.shape, bank.triangles, _ConstRec(np.r_[v[:2], -v[2:]]), _ConstRec(np.r_[v[:2], -v[2:]])
    )
    built = build_bank(far, count=2, tries=2, per_part=2)
    assert len(built) == 2 and built.k == 8
    with pytest.raises(ConfigError, match="within a threshold"):  # the dlib margin refuses them all
        build_bank(far, count=2, tries=2, per_part=2, dlib_margin=1.0)
    with pytest.raises(ConfigError, match="per_part"):
        build_bank(far, count=2, tries=2, per_part=1)
    with pytest.raises(ConfigError, match="fewer than k=12"):
        build_bank(far, count=2, tries=2, per_part=3)


def test_shipped_bank_composites_are_nobody() -> None:
    """The shipped bank: composites only, each >= dlib's 0.6 and FaceRes's threshold from
    every bank photo (as the builder recorded), and re-checked against shared-data persons."""
    from streamanon.anonymize.surrogate_bank import default_bank
    from streamanon.models.faceres import THRESHOLD as FACERES_THRESHOLD

    bank = default_bank()
    assert len(bank) >= 32 and bank.k >= 5
    assert bank.faces.shape[1:] == (160, 160, 3)
    assert bank.min_dlib.min() >= 0.6 and bank.min_faceres.min() >= FACERES_THRESHOLD
    assert bank.dlib is not None and bank.dlib.shape == (len(bank), 128)  # tracks drawn apart


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib is not installed")
def test_shipped_composites_match_no_bank_person_under_dlib(data_dir: Any) -> None:
    from streamanon.anonymize.surrogate_bank import composite_face, default_bank
    from streamanon.eval.data import load_identities
    from streamanon.eval.identity import build_references
    from streamanon.models.recognizer import DlibRecogniser, distance

    folder = data_dir / "identities_extra" / "ZPdesu__SEAN"  # a bank source (one photo per person)
    rec = DlibRecogniser()
    refs, _ = build_references(load_identities([folder])[:20], rec)
    emb = np.stack([r.embedding for r in refs])
    bank = default_bank()
    for i in range(0, len(bank), max(1, len(bank) // 8)):
        c = bank.faces[i]
        d = distance(rec.embed(c, [composite_face(rec, c, bank.shape)]), emb)
        assert float(d.min()) >= 0.6


def test_face_bank_file_round_trip_and_bad_paths(tmp_path: Any) -> None:
    from streamanon.anonymize.surrogate_bank import surrogate_bank
    from streamanon.errors import ModelError

    bank = make_bank(4)
    path = tmp_path / "bank.npz"
    bank.save(path)
    back = surrogate_bank(str(path))
    assert np.array_equal(back.faces, bank.faces) and back.k == bank.k
    with pytest.raises(ConfigError, match="neither a bank file nor a folder"):
        surrogate_bank(str(tmp_path / "missing"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a bank")
    with pytest.raises(ModelError, match="not a surrogate bank"):
        surrogate_bank(str(junk))


def test_ring_reads_no_face_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two frames that differ only inside the face mask give the same output once the
    colour statistics (the only thing read from the face) are fixed: the ring around the
    composite comes from outside every mask, the neck from the painted composite."""
    monkeypatch.setattr("streamanon.anonymize.surrogate.match_colour", lambda face, *args, **kwargs: face)
    d = dets([[100, 60, 200, 180], [230, 40, 300, 120]], [1, 2])
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    a_img, b_img = noise_image(seed=1), noise_image(seed=1)
    b_img[mask] = noise_image(seed=2)[mask]
    out_a, out_b = anonymiser().apply(a_img, d), anonymiser().apply(b_img, d)
    assert np.array_equal(out_a, out_b)


def test_ring_carries_the_surroundings_texture() -> None:
    """Around the composite the mask continues the texture around it (mirrored in), not a
    smooth fill (the hood): stripes outside the mask go on inside its ring (but under the
    jaw, where the neck is painted: ``test_neck_under_the_jaw``)."""
    xx = np.mgrid[0:240, 0:320][1]
    stripes = np.where((xx // 3) % 2 == 0, 60, 190).astype(np.uint8)
    img = np.repeat(stripes[:, :, None], 3, axis=2)
    d = dets([[110, 70, 190, 170]], [1])
    out = anonymiser().apply(img, d)
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    face = np.zeros((240, 320), np.uint8)
    import cv2

    pts = FakeLandmarker()(None, d.xyxy)[0]
    cv2.fillConvexPoly(face, cv2.convexHull(with_forehead(pts).astype(np.int32)), 1)
    neck = np.zeros((240, 320), np.uint8)
    cv2.fillPoly(neck, [np.vstack([pts[4:13], pts[12] + (0, 200), pts[4] + (0, 200)]).astype(np.int32)], 1)
    ring = mask & ~cv2.dilate(face | neck, np.ones((9, 9), np.uint8)).astype(bool)
    grey = out[:, :, 0].astype(np.float32)
    hf = np.abs(grey - cv2.blur(grey, (5, 5)))
    outside = ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert ring.sum() > 200
    assert hf[ring].mean() > 0.3 * hf[outside].mean()


def test_mask_edge_is_seamless() -> None:
    """On a smooth gradient the output's mask edge continues the surroundings (no step)."""
    yy, xx = np.mgrid[0:240, 0:320]
    img = np.repeat((40 + 0.5 * xx + 0.2 * yy).astype(np.uint8)[:, :, None], 3, axis=2)
    d = dets([[110, 70, 190, 170]], [1])
    out = anonymiser().apply(img, d).astype(int)
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    import cv2

    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(out[edge] - img[edge].astype(int)).mean() < 4


def test_short_coast_keeps_the_surrogate_long_coast_blurs() -> None:
    """A track's coasting rows keep its surrogate for ``COAST_FRAMES`` frames (moved with the
    box), then get the blur and are counted; a coasting row of a track never painted blurs."""
    from streamanon.anonymize.base import AnonymizerSession, FrameInfo
    from streamanon.anonymize.surrogate import COAST_FRAMES
    from streamanon.types import SOURCE_TRACK

    a = anonymiser()
    session = AnonymizerSession(a)
    img = noise_image()
    session(img, dets([[100, 60, 200, 180]], [1]), FrameInfo(0))
    assert a.served == {"surrogate": 1}
    for f in range(1, COAST_FRAMES + 3):
        box = [[100 + 2 * f, 60, 200 + 2 * f, 180]]
        d = dets(box, [1])
        coast = Detections(d.xyxy, score=d.score, landmarks=d.landmarks, track_id=d.track_id, source=[SOURCE_TRACK])
        out = session(img, coast, FrameInfo(f))
        mask = union_mask(coast, 320, 240, "ellipse", 1.3, 2.0)
        assert (out[mask] == img[mask]).all(-1).mean() < 0.05  # painted or blurred, never raw
    assert a.coasted == COAST_FRAMES
    assert a.served == {"surrogate": 1 + COAST_FRAMES, "blur": 2}
    assert a.reasons == {"no-detection": 2}
    b = anonymiser()
    d = dets([[100, 60, 200, 180]], [7])
    b.apply(img, Detections(d.xyxy, score=d.score, landmarks=d.landmarks, track_id=d.track_id, source=[SOURCE_TRACK]))
    assert b.reasons == {"no-detection": 1} and b.coasted == 0


def test_fit_that_disagrees_with_the_detector_blurs() -> None:
    """dlib's fit far from the detector's five points (a false face, a profile) is not painted."""
    a = anonymiser()
    d = dets([[100, 60, 200, 180]], [1])
    wrong = Detections(d.xyxy, score=d.score, landmarks=d.landmarks + np.float32([30, 25]), track_id=d.track_id)
    img = noise_image()
    out = a.apply(img, wrong)
    mask = union_mask(wrong, 320, 240, "ellipse", 1.3, 2.0)
    assert (out[mask] == img[mask]).all(-1).mean() < 0.05
    assert a.reasons == {"implausible-landmarks": 1} and "surrogate" not in a.served


class FixedAttributes:
    """``--keep``'s estimator, fixed: every face is ``(gender, band)``; counts its calls."""

    def __init__(self, gender: str, band: str) -> None:
        self.value = (gender, band)
        self.calls = 0

    def __call__(self, image: Any, box: Any) -> tuple[str, str]:
        self.calls += 1
        return self.value


def keep_bank() -> SurrogateBank:
    b = make_bank(8)
    gender = np.array(["female", "male"] * 4)
    band = np.array(["young", "young", "young", "older", "young", "young", "middle", "older"])
    return SurrogateBank(b.faces, b.shape, b.triangles, gender, band, b.min_dlib, b.min_faceres, b.k, "test")


@pytest.mark.parametrize(
    ("keep", "attrs", "allowed", "unmet"),
    [
        (("gender",), ("male", "young"), {1, 3, 5, 7}, {}),
        (("gender", "age"), ("male", "older"), {3, 7}, {}),
        (("age",), ("female", "middle"), {6}, {}),
        (("gender", "age"), ("female", "older"), {0, 2, 4, 6}, {"age-unmet": 10}),  # no older woman: gender kept
    ],
)
def test_keep_draws_from_the_originals_gender_and_age_band(
    keep: tuple[str, ...], attrs: tuple[str, str], allowed: set[int], unmet: dict[str, int]
) -> None:
    from streamanon.anonymize.base import AnonymizerSession, FrameInfo

    est = FixedAttributes(*attrs)
    a = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=5, keep=keep), keep_bank(), FakeLandmarker(), est)
    session = AnonymizerSession(a)
    boxes = [[20 + 28 * i, 60, 44 + 28 * i, 84] for i in range(10)]
    for f in range(2):
        session(noise_image(), dets(boxes, list(range(10))), FrameInfo(f))
    drawn = {a.track_surrogate(t) for t in range(10)}
    assert drawn <= allowed and len(drawn) >= min(2, len(allowed))
    assert est.calls == 10  # once per track, not per frame
    assert {k: v for k, v in a.kept.items() if k != "drawn"} == unmet
    assert a.report()["keep"] == list(keep)


def test_keep_is_refused_without_an_estimator_or_for_another_method() -> None:
    from streamanon.anonymize.factory import AnonymizerFactory

    with pytest.raises(ConfigError, match="attribute estimator"):
        SurrogateAnonymizer(AnonymizeConfig(method="surrogate", keep=("gender",)), make_bank(), FakeLandmarker())
    with pytest.raises(ConfigError, match="--keep is for --method surrogate"):
        AnonymizerFactory(AnonymizeConfig(method="blur", keep=("gender",)))
    with pytest.raises(ConfigError, match="keep"):
        AnonymizeConfig(method="surrogate", keep=("hair",))


def test_folder_bank_keeps_k(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``--face-bank`` folder is built with the run's k, never lowered to the folder's
    person count (it was: 3 persons gave composites of 3)."""
    import streamanon.anonymize.surrogate_bank as sb

    for p in ("a", "b", "c"):
        (tmp_path / p).mkdir()
        (tmp_path / p / "x.png").write_bytes(b"")
    seen: dict[str, Any] = {}

    def fake_build(folders: Any, count: int = 0, k: int = 0, **kw: Any) -> SurrogateBank:
        seen["k"] = k
        raise ConfigError(f"face bank: 3 persons with a face, fewer than k={k}")

    monkeypatch.setattr(sb, "build_bank", fake_build)
    with pytest.raises(ConfigError, match="fewer than k=10"):
        sb.surrogate_bank(str(tmp_path), 10)
    assert seen["k"] == 10


def test_keep_estimate_that_fails_still_paints_and_is_counted() -> None:
    class Broken:
        def __call__(self, image: Any, box: Any) -> tuple[str, str]:
            raise RuntimeError("onnx failed")

    a = SurrogateAnonymizer(
        AnonymizeConfig(method="surrogate", seed=1, keep=("gender",)), keep_bank(), FakeLandmarker(), Broken()
    )
    a.apply(noise_image(), dets([[100, 60, 200, 180]], [-1]))
    assert a.served == {"surrogate": 1} and a.kept == {"estimate-failed": 1}


def test_cli_keep_face_bank_and_k_reach_the_surrogate_config() -> None:
    """``--keep gender,age``, ``--face-bank`` and ``--k`` are options of ``--method surrogate``
    (``--face-bank`` was refused with it although the factory takes it); ``--keep`` with another
    method is refused, and ``eval temporal`` keeps its own ``--keep DIR``."""
    from streamanon.cli import check_options, config_from_args, given_options, run_parser
    from streamanon.eval.cli import build_parser
    from streamanon.options import FILE

    argv = ["x.mp4", "--method", "surrogate", "--keep", "gender,age", "--face-bank", "b.npz", "--k", "6"]
    parser = run_parser()
    ns = parser.parse_args(argv)
    check_options(ns, given_options(parser, argv), FILE)
    a = config_from_args(ns).anonymize
    assert (a.keep, a.face_bank, a.k) == (("gender", "age"), "b.npz", 6)
    argv = ["x.mp4", "--method", "blur", "--keep", "gender"]
    with pytest.raises(ConfigError, match="--keep"):
        check_options(run_parser().parse_args(argv), given_options(run_parser(), argv), FILE)
    assert str(build_parser().parse_args(["temporal", "c.mp4", "--keep", "out"]).keep) == "out"


@pytest.mark.parametrize(
    "boxes",
    [
        [[-30, -20, 60, 80]],  # off the top-left corner
        [[270, 180, 350, 260]],  # off the bottom-right corner
        [[100, 60, 200, 180], [150, 70, 250, 190]],  # overlapping faces
        [[5, 5, 315, 235]],  # the face fills the frame: nothing around it to mirror
        [[150, 100, 172, 122]],  # just above the smallest face painted
    ],
)
def test_edges_overlaps_and_full_frame_faces_leave_nothing_raw(boxes: list[list[float]]) -> None:
    a = anonymiser()
    d = dets(boxes, list(range(len(boxes))))
    img = noise_image()
    out = a.apply(img, d)
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    assert np.array_equal(out[~mask], img[~mask])
    assert (out[mask] == img[mask]).all(-1).mean() < 0.05
    assert sum(a.served.values()) == len(boxes) and not a.reasons.get("warp-failed")


def smooth_texture(h: int, w: int, seed: int = 4) -> np.ndarray:
    """Hair-like texture: noise at a few scales (what the mirror carries inward)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for s in (2, 6, 20):
        n = rng.normal(0, 40, (h // s + 1, w // s + 1, 3)).astype(np.float32)
        out += cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out + 128, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("boxes", "narrowed"),
    [
        # small and 60 px: the mirror's colour test (``MIRROR_SAME``) reads as far around as
        # the window reaches: nothing to narrow
        ([[300, 200, 340, 240]], False),
        ([[300, 200, 360, 260]], False),
        ([[200, 120, 421, 360]], True),  # large: the geometry at half size (an even window)
        ([[0, 0, 70, 60]], True),  # at the frame's corner
        ([[200, 120, 420, 360]], True),  # large, an odd window: grown by a pixel to keep the grid
        ([[230, 150, 330, 260]], True),  # mid-size: half size too
        ([[0, 0, 639, 479]], False),  # the whole frame: nothing around to narrow to
        ([[150, 200, 210, 260], [250, 200, 310, 260]], False),  # a neighbour within reach
    ],
)
def test_mirror_on_the_narrowed_window_equals_the_full_window(
    boxes: list[list[float]], narrowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror computes a face alone in its surroundings on the part of the window its
    output reads (where the work grid stays the same); the pixels it paints are those of the
    full window (to rounding)."""
    import streamanon.anonymize.surrogate as surrogate
    from streamanon.anonymize.mask import face_regions

    windows: list[bool] = []
    narrow_window = surrogate._narrow

    def spy(window: Any, *args: Any) -> Any:
        out = narrow_window(window, *args)
        windows.append(out != window)
        return out

    monkeypatch.setattr(surrogate, "_narrow", spy)
    img = smooth_texture(480, 640)
    d = dets(boxes, list(range(len(boxes))))
    faces = union_mask(d, 640, 480, "ellipse", 1.3, 2.0)
    for region in face_regions(d, 640, 480, "ellipse", 1.3, 2.0):
        narrow = surrogate.mirror_surroundings(img, faces, region).astype(int)
        full = surrogate.mirror_surroundings(img, faces, region, full=True).astype(int)
        assert np.abs(narrow - full)[region.mask > 0].max() <= 1
    assert windows and all(w == narrowed for w in windows)


def test_colour_match_keeps_a_face_lit_like_itself_and_takes_a_target_light() -> None:
    """Matched to itself a face comes back unchanged (to the Lab round trip); matched to a
    darker, greyer target its lightness and chroma medians become the target's."""
    import cv2

    from streamanon.anonymize.surrogate import match_colour

    face = smooth_texture(120, 100, seed=7)
    inside = np.zeros((120, 100), bool)
    inside[20:100, 15:85] = True
    same = match_colour(face, inside, face, grey=False).astype(int)
    err = np.abs(same - face.astype(int))[inside]
    assert err.mean() < 1.0 and np.percentile(err, 99) <= 4  # uint8 Lab round trip of saturated pixels: more
    target = (face.astype(np.float32) * 0.5 + 30).astype(np.uint8)
    out = match_colour(face, inside, target, grey=False)
    lab_out, lab_t = (cv2.cvtColor(x, cv2.COLOR_RGB2LAB)[inside].astype(float) for x in (out, target))
    assert np.abs(np.median(lab_out, 0) - np.median(lab_t, 0)).max() <= 3
    grey_t = np.repeat(cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    g = match_colour(face, inside, grey_t, grey=True)
    assert (g.max(2) == g.min(2)).all()  # grey in, grey out
    assert abs(float(np.median(g[inside][:, 0])) - float(np.median(grey_t[inside][:, 0]))) <= 3


def test_per_track_report_records_each_ended_track() -> None:
    from streamanon.anonymize.base import AnonymizerSession, FrameInfo

    a = anonymiser()
    s = AnonymizerSession(a)
    img = noise_image()
    s(img, dets([[100, 60, 200, 180], [230, 40, 300, 120]], [4, 2]), FrameInfo(0))
    s(img, dets([[100, 60, 200, 180]], [4]), FrameInfo(1))
    rep = s.close()
    assert [r["track_id"] for r in rep["per_track"]] == [2, 4]
    assert rep["per_track"][1]["served"] == {"surrogate": 2}
    assert rep["per_track"][0]["first_frame"] == 0 and rep["per_track"][0]["surrogate"] is not None


def test_faces_painted_in_parallel_equal_one_by_one_and_a_failure_stays_blurred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The faces of a frame are painted in threads: the output is the one-by-one output
    (overlapping masks: the later face wins either way), and a face whose paint raises in
    its thread keeps the blur and is counted while the others are painted."""
    import streamanon.anonymize.surrogate as surrogate

    img = smooth_texture(240, 320)
    boxes = [[20, 40, 100, 130], [90, 50, 170, 140], [180, 30, 240, 100], [240, 120, 310, 200]]
    d = dets(boxes, [1, 2, 3, 4])
    monkeypatch.setattr(surrogate, "PAINT_THREADS", 1)
    one_by_one = anonymiser().apply(img, d)
    monkeypatch.setattr(surrogate, "PAINT_THREADS", 4)
    parallel = anonymiser().apply(img, d)
    assert np.array_equal(one_by_one, parallel)
    import threading

    assert not [t.name for t in threading.enumerate() if t.name.startswith("streamanon-paint")]  # joined
    real = surrogate.paint

    def third_fails(original: Any, region: Any, *args: Any) -> Any:
        if region.roi[0] > 150 and region.roi[1] < 60:
            raise ValueError("boom")
        return real(original, region, *args)

    monkeypatch.setattr(surrogate, "paint", third_fails)
    a = anonymiser()
    out = a.apply(img, d)
    assert a.reasons == {"warp-failed": 1} and a.served == {"surrogate": 3, "blur": 1}
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    assert (out[mask] == img[mask]).all(-1).mean() < 0.05  # nothing raw


@pytest.mark.parametrize("part", [(0, 0, 40, 30), (25, 17, 61, 52), (50, 40, 90, 70), (3, 60, 88, 70)])
def test_blur_of_a_part_equals_the_part_of_the_blur(part: tuple[int, int, int, int]) -> None:
    import cv2

    from streamanon.anonymize.surrogate import _blur_part

    img = noise_image(70, 90)
    for sigma in (0.8, 2.5, 6.0):
        x0, y0, x1, y1 = part
        full = cv2.GaussianBlur(img, (0, 0), sigma)[y0:y1, x0:x1]
        assert np.array_equal(_blur_part(img, sigma, part), full)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_paints_in_parallel_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked child paints in parallel too (a pool kept from the parent hung there: its
    threads do not exist in the child; each frame now starts and joins its own)."""
    import signal

    import streamanon.anonymize.surrogate as surrogate

    monkeypatch.setattr(surrogate, "PAINT_THREADS", 2)
    img = smooth_texture(240, 320)
    d = dets([[20, 40, 100, 130], [180, 30, 240, 100]], [1, 2])
    ref = anonymiser().apply(img, d)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when painted alike, killed by the alarm when it hangs
        signal.alarm(30)
        os._exit(0 if np.array_equal(anonymiser().apply(img, d), ref) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def bank_in_pairs(n: int = 16) -> SurrogateBank:
    """A bank whose composites come in look-alike pairs under dlib: 2i and 2i+1 at 0.1, every
    other pair at 1.0 (the vectors are what ``describe`` stores)."""
    vecs = np.zeros((n, 128), np.float32)
    for i in range(n):
        vecs[i, i // 2] = 1.0 / np.sqrt(2)  # pairs: 1.0 apart between pairs
        vecs[i, 64] = 0.05 if i % 2 else -0.05  # 0.1 apart within a pair
    return dataclasses.replace(make_bank(n), dlib=vecs)


def test_new_tracks_draw_composites_dlib_tells_apart() -> None:
    """Tracks drawn one after another never get look-alike composites while the bank has
    others; without vectors (an old bank) the draw is the plain one and look-alikes happen."""
    from streamanon.anonymize.base import FrameInfo

    def pairs_drawn(bank: SurrogateBank, seed: int) -> int:
        a = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=seed), bank, FakeLandmarker())
        got = []
        for t in range(6):
            a.track_started(t, FrameInfo(t))
            got.append(a.track_surrogate(t))
        return sum(1 for i in range(6) for j in range(i) if got[i] // 2 == got[j] // 2)

    described = bank_in_pairs()
    plain = dataclasses.replace(described, dlib=None)
    assert sum(pairs_drawn(described, s) for s in range(40)) == 0
    assert sum(pairs_drawn(plain, s) for s in range(40)) > 5


def test_distinct_draw_falls_back_to_the_farthest_and_counts_it() -> None:
    """More recent tracks than the bank has distinct composites: the draw still gives a
    composite (the farthest quarter) and the report counts it."""
    from streamanon.anonymize.base import FrameInfo

    a = SurrogateAnonymizer(AnonymizeConfig(method="surrogate", seed=0), bank_in_pairs(4), FakeLandmarker())
    for t in range(4):
        a.track_started(t, FrameInfo(t))
        assert a.track_surrogate(t) is not None
    assert a.report()["keep_draws"].get("distinct-unmet", 0) >= 1


def test_bank_file_keeps_its_dlib_vectors(tmp_path: Any) -> None:
    from streamanon.anonymize.surrogate_bank import surrogate_bank
    from streamanon.errors import ModelError

    bank = bank_in_pairs(4)
    bank.save(tmp_path / "b.npz")
    back = surrogate_bank(str(tmp_path / "b.npz"))
    assert back.dlib is not None and np.array_equal(back.dlib, bank.dlib)
    dataclasses.replace(bank, dlib=np.zeros((3, 128), np.float32)).save(tmp_path / "bad.npz")
    with pytest.raises(ModelError, match="dlib vectors"):
        surrogate_bank(str(tmp_path / "bad.npz"))


class ScriptedVetter:
    """A stand-in for dlib's recogniser: each check (the original's vector, then the painted
    face's) comes out ``distances[k]`` apart, in order."""

    def __init__(self, distances: list[float]) -> None:
        self.distances = distances
        self.checks = 0
        self._original = True

    def locate(self, image: Any, box: np.ndarray) -> Any:
        return box

    def embed(self, image: Any, faces: list[Any]) -> np.ndarray:
        vec = np.zeros((1, 128), np.float32)
        if not self._original:
            vec[0, 0] = self.distances[min(self.checks, len(self.distances) - 1)]
            self.checks += 1
        self._original = not self._original
        return vec


def vetted_anonymiser(distances: list[float]) -> tuple[SurrogateAnonymizer, ScriptedVetter]:
    vetter = ScriptedVetter(distances)
    config = AnonymizeConfig(method="surrogate", seed=3)
    return SurrogateAnonymizer(config, make_bank(8), FakeLandmarker(), vetter=vetter), vetter


def test_a_composite_too_close_to_its_original_is_blurred_and_redrawn() -> None:
    from streamanon.anonymize.base import FrameInfo

    a, vetter = vetted_anonymiser([0.3, 0.9])
    img, d = noise_image(), dets([[100, 60, 200, 180]], [1])
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    a.track_started(1, FrameInfo(0))
    first = a.track_surrogate(1)
    out = a.apply(img, d, FrameInfo(0))
    assert (out[mask] == img[mask]).all(-1).mean() < 0.05  # blurred, not raw
    assert a.reasons == {"too-close": 1}
    assert a.track_surrogate(1) not in (None, first)  # another composite drawn
    a.apply(img, d, FrameInfo(1))  # checked again: far enough, painted
    a.apply(img, d, FrameInfo(2))  # passed: not checked again
    assert vetter.checks == 2 and a.served == {"blur": 1, "surrogate": 2}
    assert a.report()["vetting"] == {"distance": 0.65, "checked": 2, "too-close": 1, "redrawn": 1}


def test_a_track_every_composite_of_which_comes_too_close_stays_blurred() -> None:
    from streamanon.anonymize.base import FrameInfo
    from streamanon.anonymize.surrogate import VET_TRIES

    a, vetter = vetted_anonymiser([0.3])
    img, d = noise_image(), dets([[100, 60, 200, 180]], [1])
    a.track_started(1, FrameInfo(0))
    for f in range(VET_TRIES + 3):
        out = a.apply(img, d, FrameInfo(f))
        mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
        assert (out[mask] == img[mask]).all(-1).mean() < 0.05
    assert vetter.checks == VET_TRIES  # then no more composites are tried
    assert a.reasons == {"too-close": VET_TRIES + 3} and not a.served["surrogate"]


@pytest.mark.parametrize("band", [6, 10])
def test_ring_continues_the_band_around_the_mask_not_the_wall_beyond(
    band: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head whose mask edge lies in its dark hair, a bright wall beyond: the ring continues
    the hair inward (mirror points across the hair's outer boundary are pulled back toward
    the edge), where the plain mirror brought the wall in (the pale halo at CCTV size)."""
    import cv2

    from streamanon.anonymize import surrogate
    from streamanon.anonymize.mask import face_regions

    d = dets([[120, 70, 200, 170]], [1])
    faces = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    hair = cv2.dilate(faces.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1,) * 2)) > 0
    img = np.full((240, 320, 3), 220, np.uint8)
    img[hair & ~faces] = (50, 40, 35)
    img = np.clip(img.astype(int) + np.random.default_rng(1).integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
    region = face_regions(d, 320, 240, "ellipse", 1.3, 2.0)[0]
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(region.mask > 0)
    deeper = (depth > band + 2) & (depth < band + 8)  # past the hair's width, inside the mask
    assert deeper.sum() > 100
    lit = surrogate.mirror_surroundings(img, faces, region)[deeper].mean()
    monkeypatch.setattr(surrogate, "MIRROR_SAME", None)
    plain = surrogate.mirror_surroundings(img, faces, region)[deeper].mean()
    assert lit < 60 and plain > lit + 50  # the hair's 45 against a mix with the wall's 220


def test_neck_under_the_jaw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the jaw the ring is not the collar mirrored up to the chin: a neck in the painted
    cheeks' colour, shaded (``NECK_SHADE``), whatever the original shows there (no pixel of it
    is read), and the mask's edge stays the surroundings'. Without it the shirt reached the chin."""
    import cv2

    from streamanon.anonymize import surrogate

    wall, skin, neck, shirt = (200, 200, 200), (190, 140, 120), (90, 150, 60), (30, 40, 90)
    img = np.empty((240, 320, 3), np.uint8)
    img[:] = wall
    d = dets([[110, 70, 190, 170]], [1])
    pts = FakeLandmarker()(None, d.xyxy)[0]
    chin = int(pts[8, 1])
    cv2.fillConvexPoly(img, cv2.convexHull(with_forehead(pts).astype(np.int32)), skin)
    img[chin : chin + 12, 128:172] = neck  # a green neck: not what is painted
    img[chin + 12 :] = shirt
    under = (slice(chin + 2, chin + 9), slice(142, 158))  # under the chin, inside the mask
    cheek = (slice(int(pts[3, 1]) - 3, int(pts[3, 1]) + 3), slice(int(pts[3, 0]) + 8, int(pts[3, 0]) + 14))
    mask = union_mask(d, 320, 240, "ellipse", 1.3, 2.0)
    assert mask[under].all() and not mask[chin + 12 :].all()

    def lab(out: np.ndarray, at: tuple[slice, slice]) -> np.ndarray:
        mean = out[at].reshape(-1, 3).mean(0).round().astype(np.uint8)
        return cv2.cvtColor(mean[None, None], cv2.COLOR_RGB2LAB)[0, 0].astype(float)

    with_neck = anonymiser().apply(img, d)
    painted, below = lab(with_neck, cheek), lab(with_neck, under)
    assert abs(below[0] - surrogate.NECK_SHADE * painted[0]) < 0.1 * painted[0]  # the cheeks, shaded
    assert np.linalg.norm(below[1:] - painted[1:]) < 8  # their hue, not the green under the chin
    monkeypatch.setattr(surrogate, "NECK", False)
    without = anonymiser().apply(img, d)
    shirt_lab = cv2.cvtColor(np.uint8([[shirt]]), cv2.COLOR_RGB2LAB)[0, 0].astype(float)
    assert np.linalg.norm(lab(without, under) - shirt_lab) < 15 < 60 < np.linalg.norm(below - shirt_lab)
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(with_neck[edge].astype(int) - without[edge]).max() <= 2
