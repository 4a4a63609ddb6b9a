"""Selective anonymisation: regions honoured per pixel, consenting people kept, all else masked.

The keep rule is tested with a scripted recogniser (distances chosen per face) so that
every branch is reached exactly; then end to end with dlib's recogniser on shared data:
a still with two people (Obama kept) and a Hamilton clip cut (Lin-Manuel Miranda kept,
everyone else anonymised).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from streamanon.anonymize import AnonymizerSession, FrameInfo, SolidAnonymizer
from streamanon.anonymize.selective import (
    KEEP_FRAMES,
    MAX_TRIES,
    RETRY_EVERY,
    SelectiveAnonymizer,
    active_mask,
    parse_region,
)
from streamanon.cli import config_from_args, run_parser
from streamanon.config import AnonymizeConfig, DetectConfig, PipelineConfig
from streamanon.errors import ConfigError
from streamanon.types import SOURCE_DETECTOR, SOURCE_TRACK, Detections

RNG = np.random.default_rng(7)


def noise(w: int = 320, h: int = 240) -> NDArray[np.uint8]:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def solid() -> SolidAnonymizer:
    return SolidAnonymizer(AnonymizeConfig(color=(255, 0, 255), mask_scale=1.0, mask_margin=0, shape="box"))


def changed(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.bool_]:
    return (a != b).any(axis=2)


# -- regions ---------------------------------------------------------------------------
def test_only_region_changes_nothing_outside_it_and_anonymises_inside() -> None:
    img = noise()
    dets = Detections(np.array([[40, 40, 120, 140]], np.float32))  # straddles x = 80
    sel = SelectiveAnonymizer(solid(), only_regions=[(80, 0, 320, 240)])
    out = sel.apply(img, dets)
    diff = changed(img, out)
    assert not diff[:, :80].any(), "pixels outside --only-region are the original's"
    assert diff[40:140, 80:120].all(), "the face's part inside is anonymised"
    # Relative coordinates mean the same rectangle.
    rel = SelectiveAnonymizer(solid(), only_regions=[(0.25, 0, 1, 1)]).apply(img, dets)
    assert np.array_equal(rel, out)


def test_ignore_region_and_polygons_are_left_bit_exact() -> None:
    img = noise()
    dets = Detections(np.array([[20, 20, 300, 220]], np.float32))
    tri = (160, 40, 280, 200, 40, 200)
    sel = SelectiveAnonymizer(solid(), ignore_regions=[(0, 0, 100, 60), tri])
    out = sel.apply(img, dets)
    keep = active_mask([], [(0, 0, 100, 60), tri], 320, 240)
    assert keep is not None
    diff = changed(img, out)
    assert not diff[~keep].any(), "ignored pixels unchanged"
    assert diff[
        keep
        & (np.mgrid[0:240, 0:320][0] >= 20)
        & (np.mgrid[0:240, 0:320][0] < 220)
        & (np.mgrid[0:240, 0:320][1] >= 20)
        & (np.mgrid[0:240, 0:320][1] < 300)
    ].all()
    assert not keep[0:60, 0:100].any() and not keep[150, 160] and keep[230, 10]


def test_a_face_wholly_outside_the_only_region_never_reaches_the_method() -> None:
    seen: list[int] = []

    class Spy(SolidAnonymizer):
        def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
            seen.append(len(dets))
            return super().apply(image, dets, info)

    sel = SelectiveAnonymizer(Spy(AnonymizeConfig()), only_regions=[(200, 0, 320, 240)])
    sel.apply(noise(), Detections(np.array([[10, 10, 50, 50], [250, 100, 300, 150]], np.float32)))
    assert seen == [1]


def test_region_parsing_and_the_config() -> None:
    assert parse_region("1,2,30,40") == (1, 2, 30, 40)
    assert len(parse_region("0,0, 0.5,0, 0.5,0.5")) == 6
    for bad in ("1,2,3", "5,5,1,1", "a,b,c,d", "1,2,3,4,5,6,7"):
        with pytest.raises(ConfigError, match="region"):
            parse_region(bad)
    ns = run_parser().parse_args(
        [
            "in.mp4",
            "--only-region",
            "0,0,0.5,1",
            "--ignore-region",
            "1,1,20,20",
            "--ignore-region",
            "0,0,9,0,9,9",
            "--keep-face",
            "me.jpg",
        ]
    )
    cfg = config_from_args(ns)
    assert cfg.anonymize.only_regions == ((0, 0, 0.5, 1),)
    assert len(cfg.anonymize.ignore_regions) == 2 and cfg.anonymize.keep_faces == ("me.jpg",)
    assert PipelineConfig.from_json(cfg.to_json()) == cfg, "batch workers get the same selection"
    with pytest.raises(ConfigError):
        AnonymizeConfig(ignore_regions=((1, 2, 3),))


# -- the keep rule ---------------------------------------------------------------------
class Scripted:
    """Stands in for ``KeepFaces``: the distance of a box is looked up by its x0."""

    names = ("ref.jpg",)

    def __init__(self, script: dict[int, Sequence[float]], fail_on: int | None = None) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.fail_on = fail_on
        self.calls = 0

    def distances(
        self, image: NDArray[np.uint8], boxes: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        self.calls += 1
        if self.fail_on is not None and any(int(b[0]) == self.fail_on for b in boxes):
            raise RuntimeError("recogniser exploded")
        return np.array([self.script[int(b[0])].pop(0) for b in boxes], np.float32), np.zeros(len(boxes), np.int64)


def rows(*spec: tuple[int, int, int]) -> Detections:
    """(x0, track id, source) -> 60 px faces at y 50."""
    xyxy = np.array([[x, 50, x + 60, 110] for x, _, _ in spec], np.float32).reshape(-1, 4)
    return Detections(
        xyxy, None, None, np.array([t for _, t, _ in spec], np.int64), np.array([s for _, _, s in spec], np.uint8)
    )


def visible_per_frame(
    keep: Any, frames: Sequence[Detections], still: bool = False
) -> tuple[list[set[int]], dict[str, Any]]:
    img = noise(480, 200)
    sel = SelectiveAnonymizer(solid(), keep=keep, still=still)
    session = AnonymizerSession(sel)
    shown: list[set[int]] = []
    for n, dets in enumerate(frames):
        out = session(img, dets, FrameInfo(n, n / 25))
        diff = changed(img, out)
        shown.append(
            {
                int(t)
                for (x0, y0, x1, y1), t in zip(dets.xyxy.astype(int), dets.track_id, strict=True)
                if not diff[y0:y1, x0:x1].any()
            }
        )
    return shown, session.close()["selection"]


def test_a_confident_repeated_match_is_kept_and_nothing_else() -> None:
    n = 14
    script = {
        10: [0.40] * n,  # track 1: the consenting person
        160: [0.55] * n,  # track 2: ambiguous, never kept
        320: [0.40, 0.40, 0.65] + [0.40] * n,  # track 3: one frame above 0.6 rejects
    }
    frames = [rows((10, 1, SOURCE_DETECTOR), (160, 2, SOURCE_DETECTOR), (320, 3, SOURCE_DETECTOR)) for _ in range(n)]
    frames[6] = rows(
        (10, 1, SOURCE_TRACK), (160, 2, SOURCE_DETECTOR), (320, 3, SOURCE_DETECTOR)
    )  # coasting: no evidence
    shown, report = visible_per_frame(Scripted(script), frames)
    first = KEEP_FRAMES - 1
    assert all(1 not in s for s in shown[:first]) and all(1 in s for s in shown[first:]), shown
    assert all(2 not in s for s in shown), "ambiguous distances anonymise"
    assert all(3 not in s for s in shown), "a frame above 0.6 rejects (retried only every RETRY_EVERY frames)"
    by_id = {t["track_id"]: t for t in report["tracks"]}
    assert by_id[1]["decision"] == "kept" and by_id[1]["distances"][:3] == [0.4, 0.4, 0.4]
    assert (
        by_id[2]["decision"] == "anonymised"
        and "ambiguous" in by_id[2]["why"]
        and len(by_id[2]["distances"]) == MAX_TRIES
    )
    assert by_id[3]["decision"] == "anonymised" and "0.650" in by_id[3]["why"]
    assert report["tracks_kept"] == 1


def test_a_kept_track_that_turns_into_someone_else_is_anonymised_on_that_frame() -> None:
    script = {10: [0.3, 0.3, 0.3, 0.3, 0.9, 0.3] + [0.3] * 20}
    frames = [rows((10, 1, SOURCE_DETECTOR)) for _ in range(8 + RETRY_EVERY)]
    shown, _ = visible_per_frame(Scripted(script), frames)
    assert [1 in s for s in shown[:6]] == [False, False, True, True, False, False]
    later = [1 in s for s in shown[6:]]
    assert not any(later[: RETRY_EVERY - 2]), "after a rejection: anonymised until re-checked and matched again"


def test_recognition_errors_untracked_rows_and_small_faces_anonymise() -> None:
    frames = [rows((10, 1, SOURCE_DETECTOR), (160, 2, SOURCE_DETECTOR), (320, -1, SOURCE_DETECTOR)) for _ in range(6)]
    keep = Scripted({10: [0.2] * 6, 160: [0.2] * 6, 320: [0.2] * 6}, fail_on=160)
    shown, report = visible_per_frame(keep, frames)
    assert all(2 not in s and -1 not in s for s in shown)
    assert report["recognition_errors"] >= 1 and report["untracked_rows_anonymised"] == 6
    err = {t["track_id"]: t for t in report["tracks"]}[2]
    assert err["decision"] == "anonymised" and "recognition error" in err["why"]
    tiny = Detections(
        np.array([[10, 50, 40, 80]], np.float32), None, None, np.array([1]), np.array([SOURCE_DETECTOR], np.uint8)
    )
    shown, report = visible_per_frame(Scripted({10: [0.1] * 5}), [tiny] * 5)
    assert not any(shown) and "not recognisable" in report["tracks"][0]["why"]


def test_a_still_needs_one_close_match() -> None:
    shown, report = visible_per_frame(
        Scripted({10: [0.3], 160: [0.48]}), [rows((10, 1, SOURCE_DETECTOR), (160, 2, SOURCE_DETECTOR))], still=True
    )
    assert shown == [{1}], "0.48 is a match on video frames, not enough for a single still"
    assert report["tracks_kept"] == 1


# -- end to end, dlib's recogniser -------------------------------------------------------
def _dlib_or_skip() -> None:
    import importlib.util

    pytest.importorskip("dlib", reason="dlib's recogniser is the [eval] extra")
    if importlib.util.find_spec("face_recognition_models") is None:  # its __init__ needs pkg_resources: not imported
        pytest.skip("dlib's models are the [eval] extra (face_recognition_models)")


@pytest.mark.timeout(300)
def test_obama_kept_and_the_other_person_anonymised_in_a_photo(data_dir: Path, tmp_path: Path) -> None:
    _dlib_or_skip()
    from streamanon.io import read_image
    from streamanon.runner import process_file

    ex = data_dir / "identities" / "face_recognition_examples"
    cfg = PipelineConfig(
        detect=DetectConfig(threads=1, small_faces="off"),
        anonymize=AnonymizeConfig(keep_faces=(str(ex / "obama.jpg"),)),
    )
    rep = process_file(ex / "two_people.jpg", tmp_path / "out.jpg", cfg)
    src, out = read_image(ex / "two_people.jpg").image, read_image(tmp_path / "out.jpg").image
    tracks = {t["track_id"]: t for t in rep.selection["tracks"]}
    assert sorted(t["decision"] for t in tracks.values()) == ["anonymised", "kept"], tracks

    # The still is written as JPEG again (small changes everywhere): compare mean changes.
    def change(img: NDArray[np.uint8], box: list[float]) -> float:
        x0, y0, x1, y1 = (round(v) for v in box)
        w = (x1 - x0) // 4
        return float(
            np.abs(
                src[y0 + w : y1 - w, x0 + w : x1 - w].astype(int) - img[y0 + w : y1 - w, x0 + w : x1 - w].astype(int)
            ).mean()
        )

    faces = rep.per_frame[0]["faces"]
    assert len(faces) == 2
    for face in faces:
        t = tracks[face["track_id"]]
        if t["decision"] == "kept":
            assert t["min_distance"] < 0.45 and t["reference"] == "obama.jpg"
            assert change(out, face["box"]) < 5, "the kept face is visible"
        else:
            assert t["min_distance"] > 0.6
            assert change(out, face["box"]) > 40, "the other face is anonymised"


@pytest.mark.timeout(300)
def test_lin_manuel_kept_and_everyone_else_anonymised_in_a_clip(data_dir: Path) -> None:
    """Frames 15-44 (other people) and 140-199 (Lin-Manuel Miranda alone) of the Hamilton clip."""
    _dlib_or_skip()
    from dataclasses import replace

    from streamanon.io import VideoSource
    from streamanon.pipeline import Pipeline, Stages

    clip = data_dir / "videos" / "face_recognition__short_hamilton_clip.mp4"
    with VideoSource(clip, audio=False) as src:
        frames = [f for f in src if 15 <= f.index < 45 or 140 <= f.index < 200]
    frames = [replace(f, index=n) for n, f in enumerate(frames)]
    ref = data_dir / "identities" / "face_recognition_examples" / "lin-manuel-miranda.png"
    cfg = PipelineConfig(
        detect=DetectConfig(threads=1, workers=1, small_faces="off"), anonymize=AnonymizeConfig(keep_faces=(str(ref),))
    )
    pipe = Pipeline(cfg, Stages(cfg))
    results = list(pipe.run(frames))
    sel = pipe.anonymizer_report["selection"]
    visible: dict[int, int] = {}
    for r in results:
        diff = changed(r.frame.image, r.image)
        for x0, y0, x1, y1 in r.dets.xyxy.astype(int):
            box = diff[max(0, y0) : y1, max(0, x0) : x1]
            if box.size and not box.any():
                visible[r.frame.index] = visible.get(r.frame.index, 0) + 1
    assert not any(i < 30 for i in visible), f"nobody is visible among the other people: {sorted(visible)}"
    assert sum(1 for i in visible if i >= 30) >= 40, f"Lin-Manuel is visible on most of his frames: {sorted(visible)}"
    kept = [t for t in sel["tracks"] if t["visible_frames"]]
    assert kept and all(t["reference"] == "lin-manuel-miranda.png" for t in kept)
    assert all(min(t["distances"]) < 0.5 for t in kept)
