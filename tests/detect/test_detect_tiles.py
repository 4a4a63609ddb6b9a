"""Small-face tiles: grid geometry, merging across tiles, scheduling, the auto decision.

Most tests use a stand-in detector that finds bright squares only when they are at least
``MIN_SIDE`` pixels wide at its input, as CenterFace misses faces under ~16 px: a square
the full pass cannot see is then found only by the upscaled tiles, which makes the merge
and the schedule observable without the network. One test runs the real detector.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from streamanon.cli import config_from_args, run_parser
from streamanon.config import DetectConfig, PipelineConfig
from streamanon.detect import merge
from streamanon.detect.tiles import AUTO_LARGE_SIDE, TILE_BATCH, TiledDetector, make_grid
from streamanon.track.association import box_iou
from streamanon.types import Detections

MIN_SIDE = 16


class Squares:
    """Finds white squares whose side at the input is >= MIN_SIDE (score 0.9).

    Records the size of every image it is called on, so tests can count tile visits.
    """

    score_margin = 1.0
    name = "squares"

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        self.calls.append([im.shape[:2] for im in images])
        out = []
        for im in images:
            _, _, stats, _ = cv2.connectedComponentsWithStats((im[:, :, 0] > 200).astype(np.uint8), connectivity=4)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:] if min(w, h) >= MIN_SIDE]
            out.append(Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32)))
        return out


def frame(w: int, h: int, squares: Sequence[tuple[int, int, int]]) -> NDArray[np.uint8]:
    """A dark frame with white squares (x, y, side)."""
    im = np.full((h, w, 3), 40, np.uint8)
    for x, y, s in squares:
        im[y : y + s, x : x + s] = 255
    return im


def tiles_visited(det: Squares, full_shape: tuple[int, int]) -> list[int]:
    """Per detector call, how many of its images were tiles (not the full frame)."""
    return [sum(1 for shape in call if shape != full_shape) for call in det.calls]


# -- geometry --------------------------------------------------------------------------
@pytest.mark.parametrize(("w", "h"), [(640, 360), (1920, 1080), (3840, 2160), (300, 200), (1000, 333)])
def test_grid_covers_the_frame_with_equal_tiles_that_overlap_by_a_face(w: int, h: int) -> None:
    g = make_grid(w, h, scale=2.0)
    b = g.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    assert len({(x1 - x0, y1 - y0) for x0, y0, x1, y1 in b}) == 1, "equal tiles batch into one call"
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in b:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({int(v) for v in b[:, 0]})
    side = int(b[0, 2] - b[0, 0])
    for a, c in itertools.pairwise(xs):
        assert a + side - c >= g.overlap, "neighbours overlap by at least the largest tile face"


def test_a_square_cut_by_a_tile_edge_is_found_once_and_whole() -> None:
    w, h = 640, 360
    g = make_grid(w, h, scale=2.0)
    edge = int(g.boxes[0, 2])  # right edge of the first tile
    truth = [(edge - 5, 100, 12)]  # 12 px: too small for the full pass, 24 px in a tile
    det = TiledDetector(Squares(), mode="on", scale=2.0)
    found = det([frame(w, h, truth)])[0]
    assert len(found) == 1, found.xyxy
    iou = box_iou(found.xyxy, [[edge - 5, 100, edge + 7, 112]])[0, 0]
    assert iou > 0.8
    # Without the edge rule the partial square of the first tile would be a second box.
    assert merge.cut_by_edge(np.array([[edge - 5, 100, edge, 112]], np.float32), g.boxes[0], w, h)[0]


def test_the_full_pass_keeps_its_faces_and_scores() -> None:
    """Tiles only add: every full-pass row survives the merge with at least its score."""
    img = frame(640, 360, [(100, 100, 60), (400, 50, 8), (300, 200, 12)])
    inner = Squares()
    full = inner([img])[0]
    out = TiledDetector(Squares(), mode="on")([img])[0]
    iou = box_iou(full.xyxy, out.xyxy)
    assert (iou.max(1) > 0.9).all()
    assert (out.score[iou.argmax(1)] >= full.score - 1e-6).all()
    # the 8 and 12 px squares are 16 and 24 px in a tile: found, at a score scaled by size
    assert len(out) == 3
    tiny = out[np.argsort(out.area)][0]
    assert tiny.score[0] == pytest.approx(0.9 * 8 / merge.SIZE_PRIOR_PX)


def test_fuse_adds_evidence_across_passes() -> None:
    d = Detections(
        np.array([[0, 0, 10, 12], [1, 1, 11, 13], [50, 50, 60, 62]], np.float32), np.array([0.5, 0.4, 0.3], np.float32)
    )
    out, seen = merge.fuse(d, np.array([0, 1, 1]), 2)
    assert len(out) == 2
    assert out.score[0] == pytest.approx(1 - 0.5 * 0.6)
    assert seen.tolist() == [3, 2]
    assert out.score[1] == pytest.approx(0.3)


def test_priors_and_max_face_size() -> None:
    d = Detections(np.array([[0, 0, 10, 12], [0, 0, 40, 10], [0, 0, 200, 240]], np.float32))
    assert merge.plausible(d).tolist() == [True, False, True]
    assert merge.plausible(d, max_size=100).tolist() == [True, False, False]
    small = merge.size_prior(
        Detections(np.array([[0, 0, 8, 8], [0, 0, 64, 64]], np.float32), np.array([0.8, 0.8], np.float32))
    )
    assert small.score.tolist() == pytest.approx([0.2, 0.8])
    big = frame(640, 360, [(100, 100, 120), (400, 50, 30)])
    out = TiledDetector(Squares(), mode="off", max_face_size=100)([big])[0]
    assert len(out) == 1 and out.xyxy[0, 0] == 400


# -- scheduling ------------------------------------------------------------------------
def test_rotation_visits_every_tile_every_k_frames_and_hot_tiles_more_often() -> None:
    w, h, k = 1280, 720, 4
    g = make_grid(w, h, 2.0)
    plans: list[list[int]] = []

    class Spy(TiledDetector):
        def _schedule(self, n, w, h, small, full):  # type: ignore[no-untyped-def]
            grid, plan, scale = super()._schedule(n, w, h, small, full)
            plans.append(plan)
            return grid, plan, scale

    inner = Squares()
    det = Spy(inner, mode="on", every=k, lag=2)
    det.start_run()
    # One 10 px square (the full pass misses it) deep inside tile 0 only.
    x0, y0 = (int(v) for v in g.boxes[0, :2])
    img = frame(w, h, [(x0 + 20, y0 + 20, 10)])
    found = [len(det.detect_frames([img], [n])[0]) for n in range(40)]
    assert plans[0] == list(range(len(g))) and plans[1] == list(range(len(g))), "nothing known yet: every tile"
    budget = 2 * -(-len(g) // k)
    assert max(len(p) for p in plans[2:]) <= budget, "rotation + hot tiles stay within the budget"
    for t in range(len(g)):
        at = [n for n, p in enumerate(plans) if t in p]
        assert (np.diff(at) <= k).all(), (t, at)
    visits = np.array([sum(t in p for p in plans) for t in range(len(g))])
    assert visits[0] >= 1.5 * np.median(visits), f"the tile with a face is visited more often: {visits.tolist()}"
    assert found == [int(0 in p) for p in plans], "found exactly on the frames its tile was visited"
    assert sum(tiles_visited(inner, (h, w))) == sum(len(p) for p in plans), "one tile image per scheduled tile"
    assert max(len(c) for c in inner.calls) <= TILE_BATCH, "tiles go to the detector in bounded batches"
    assert det.tile_batch == TILE_BATCH, "a detector of unknown device gets batches"
    rep = det.report()
    assert rep["enabled"] and rep["full_tilings"] == 2 and rep["tile_visits"] == sum(len(p) for p in plans)


def test_schedule_does_not_depend_on_the_order_workers_finish() -> None:
    """With lag 2, frames n and n+1 may be detected in either order: same result."""
    w, h = 640, 360
    imgs = [frame(w, h, [(30 + 7 * n, 40, 10), (500, 300 - 3 * n, 12)]) for n in range(24)]

    def run(order: list[int]) -> list[tuple[float, ...]]:
        det = TiledDetector(Squares(), mode="on", every=4, lag=2)
        det.start_run()
        out: dict[int, Detections] = {}
        for n in order:
            out[n] = det.detect_frames([imgs[n]], [n])[0]
        return [tuple(np.round(out[n].xyxy, 3).ravel().tolist()) for n in range(len(imgs))]

    in_order = list(range(24))
    swapped = [i for p in range(0, 24, 2) for i in (p + 1, p)]
    assert run(in_order) == run(swapped)


# -- auto ------------------------------------------------------------------------------
def test_auto_turns_on_for_large_frames_and_small_faces_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    big = TiledDetector(Squares(), mode="auto")
    big.start_run()
    big.detect_frames([frame(1920, AUTO_LARGE_SIDE, [])], [0])
    assert big.report()["enabled"] and "1080p" in big.report()["reason"]

    small = TiledDetector(Squares(), mode="auto")
    small.start_run()
    for n in range(5):
        small.detect_frames([frame(640, 360, [(100, 100, 20)] if n == 3 else [])], [n])
    rep = small.report()
    assert rep["enabled"] and rep["from_frame"] == 3 and "under 32 px on frame 3" in rep["reason"]
    assert any("small faces: tiles on" in r.getMessage() for r in caplog.records)

    none = TiledDetector(Squares(), mode="auto")
    none.start_run()
    for n in range(5):
        none.detect_frames([frame(640, 360, [(100, 100, 60)])], [n])
    assert not none.report()["enabled"] and none.report()["tiled_frames"] == 0

    live = TiledDetector(Squares(), mode="auto")
    live.start_run(live=True)
    live.detect_frames([frame(1920, 1080, [])], [0])
    assert not live.report()["enabled"] and "live" in live.report()["reason"]


def test_small_face_options_reach_the_config_and_survive_json() -> None:
    ns = run_parser().parse_args(
        ["in.mp4", "--small-faces", "on", "--tile-every", "4", "--tile-scale", "3", "--max-face-size", "90"]
    )
    cfg = config_from_args(ns)
    assert (cfg.detect.small_faces, cfg.detect.tile_every, cfg.detect.tile_scale, cfg.detect.max_face_size) == (
        "on",
        4,
        3.0,
        90.0,
    )
    assert PipelineConfig.from_json(cfg.to_json()) == cfg
    assert DetectConfig().small_faces == "off"  # tiles cost 3-9x the speed: opt-in
    with pytest.raises(ValueError, match="small_faces"):
        DetectConfig(small_faces="always")  # type: ignore[arg-type]


# -- the real detector -------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_tiles_find_more_faces_of_a_shrunk_street_scene(data_dir: Path) -> None:
    """deface's city photo at 40%: tiles find faces the full pass misses, none it found are lost."""
    from streamanon.io import read_image
    from streamanon.pipeline import Stages

    img = read_image(data_dir / "stills_no_gt" / "deface__city.jpg").image
    img = cv2.resize(img, (img.shape[1] * 2 // 5, img.shape[0] * 2 // 5), interpolation=cv2.INTER_AREA)
    on = Stages(PipelineConfig(detect=DetectConfig(small_faces="on", threads=1, workers=1)))
    assert isinstance(on.detector, TiledDetector)
    inner = on.detector.inner
    floor = 0.2 * on.detector.score_margin
    full = inner([img])[0]
    full = full[full.score >= floor]
    tiled = on.detector([img])[0]
    tiled = tiled[tiled.score >= floor]
    assert len(tiled) > len(full) >= 1, (len(tiled), len(full))
    if len(full):
        assert (box_iou(full.xyxy, tiled.xyxy).max(1) > 0.5).all(), "every full-pass face is still there"
