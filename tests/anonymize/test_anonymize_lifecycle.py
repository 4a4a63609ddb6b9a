"""The anonymiser lifecycle: a fresh anonymiser per run, track starts/ends, unique ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from streamanon.anonymize import AnonymizerFactory, AnonymizerSession, FaceAnonymizer, FrameInfo
from streamanon.anonymize.base import TrackStates
from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.pipeline import Pipeline, Stages
from streamanon.track import create_tracker
from streamanon.types import Detections, Frame

W, H = 320, 240


def _frames(n: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    return [Frame(rng.integers(60, 200, (H, W, 3), dtype=np.uint8), i) for i in range(n)]


class ScriptDetector:
    """Returns ``script[i]`` (a list of xyxy boxes) for the i-th image it is called on."""

    def __init__(self, script: Sequence[Sequence[tuple[float, float, float, float]]]) -> None:
        self.script = script
        self.calls = 0

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for _ in images:
            boxes = self.script[self.calls] if self.calls < len(self.script) else []
            self.calls += 1
            xyxy = np.array(boxes, np.float32).reshape(-1, 4)
            out.append(Detections(xyxy, np.full(len(xyxy), 0.9, np.float32)))
        return out


class Recorder(FaceAnonymizer):
    """Records the hooks; its state is one set of live track ids."""

    name = "recorder"
    built = 0

    def __init__(self) -> None:
        Recorder.built += 1
        self.events: list[tuple[str, int, int]] = []
        self.alive: set[int] = set()
        self.applied: list[tuple[int, list[int]]] = []

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        assert track_id not in self.alive
        self.alive.add(track_id)
        self.events.append(("start", track_id, info.index))

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self.alive.remove(track_id)
        self.events.append(("end", track_id, info.index))

    def apply(self, image: np.ndarray, dets: Detections, info: FrameInfo | None = None) -> np.ndarray:
        assert info is not None
        ids = [int(t) for t in dets.track_id]
        assert set(t for t in ids if t >= 0) <= self.alive  # every row's track has started
        self.applied.append((info.index, ids))
        return np.zeros_like(image)

    def report(self) -> dict[str, Any]:
        return {"events": len(self.events)}


class RecorderFactory:
    pooled = False
    name = "recorder"

    def __init__(self) -> None:
        self.made: list[Recorder] = []

    def load_bank(self, detect: Any) -> None:
        return None

    def __call__(self, **kw: Any) -> Recorder:
        r = Recorder()
        self.made.append(r)
        return r


A, B = (20.0, 20.0, 80.0, 90.0), (200.0, 40.0, 260.0, 110.0)


def _stages(script: Any, factory: Any, **track: Any) -> Stages:
    cfg = PipelineConfig()
    cfg = PipelineConfig(track=type(cfg.track)(**{"max_coast": 2, **track}))
    return Stages(cfg, detector=ScriptDetector(script), anonymizer_factory=factory)


def test_tracks_start_and_end_with_their_state() -> None:
    # face A on frames 0-4, face B on frames 2-9; max_coast 2: A ends once it coasted 2 frames
    script = [[A] if i < 2 else [A, B] if i < 5 else [B] for i in range(10)]
    factory = RecorderFactory()
    st = _stages(script, factory)
    pipe = Pipeline(st.config, st)
    results = list(pipe.run(_frames(10)))
    assert len(results) == 10 and all(r.failed is None for r in results)
    rec = factory.made[0]
    starts = [(tid, i) for kind, tid, i in rec.events if kind == "start"]
    ends = [(tid, i) for kind, tid, i in rec.events if kind == "end"]
    assert [i for _, i in starts] == [0, 2]
    a_id, b_id = starts[0][0], starts[1][0]
    assert a_id != b_id
    # A is last detected on frame 4, coasts on 5 and 6, is gone on 7
    assert (a_id, 7) in ends
    assert (b_id, 9) in ends  # the run's end ends the tracks still alive
    assert rec.alive == set()
    assert pipe.anonymizer_report["method"] == "recorder" and pipe.anonymizer_report["tracks"] == 2


def test_every_run_gets_a_fresh_anonymiser() -> None:
    script = [[A]] * 6
    factory = RecorderFactory()
    st = _stages(script, factory)
    for _ in range(2):
        list(Pipeline(st.config, st).run(_frames(3)))
    assert len(factory.made) == 2
    first, second = factory.made
    assert first is not second and second.events[0][0] == "start" and second.events[0][2] == 0


def test_track_ids_stay_unique_after_a_tracker_restart() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.inner = create_tracker(PipelineConfig().track, 0.2)

        def update(self, dets: Detections | None, frame_index: int, time: float | None = None) -> Detections:
            if frame_index == 3:
                raise RuntimeError("tracker exploded")
            out: Detections = self.inner.update(dets, frame_index)
            return out

    script = [[A]] * 8
    factory = RecorderFactory()
    cfg = PipelineConfig()
    st = Stages(cfg, detector=ScriptDetector(script), anonymizer_factory=factory, tracker_factory=Flaky)
    results = list(Pipeline(cfg, st).run(_frames(8)))
    assert results[3].failed is not None  # fully masked, never raw
    assert not results[3].image.any()
    before = {int(t) for r in results[:3] for t in r.dets.track_id}
    after = {int(t) for r in results[4:] for t in r.dets.track_id}
    assert before and after and not (before & after)
    rec = factory.made[0]
    # the failed frame ended the track (the tracker started over), the new id started after it
    assert [e[0] for e in rec.events[:3]] == ["start", "end", "start"]


def test_untracked_rows_get_no_hooks() -> None:
    rec = Recorder()
    session = AnonymizerSession(rec)
    dets = Detections(np.array([A], np.float32))  # track_id -1
    session(np.zeros((H, W, 3), np.uint8), dets, FrameInfo(0))
    assert rec.events == [] and session.close()["tracks"] == 0


def test_plain_apply_objects_still_work() -> None:
    class Plain:
        name = "plain"

        def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
            return image + 1

    session = AnonymizerSession(Plain())
    out = session(np.zeros((4, 4, 3), np.uint8), Detections.empty(), FrameInfo(0))
    assert out.max() == 1 and session.close()["method"] == "plain"


@pytest.mark.parametrize("method", ["dp-pixelate", "svd"])
def test_method_state_does_not_leak_into_the_next_run(method: str) -> None:
    # Same input, no seed: the second run's noise is a new secret draw, not the first run's.
    factory = AnonymizerFactory(AnonymizeConfig(method=method))
    image = np.full((H, W, 3), 128, np.uint8)
    dets = Detections(np.array([A], np.float32), track_id=np.array([1]))
    outs = []
    for _ in range(2):
        session = AnonymizerSession(factory())
        outs.append(session(image, dets, FrameInfo(0)))
        rep = session.close()
        assert rep["per_track"][0]["track_id"] == 1 and rep["per_track"][0]["frames"] == 1
    assert not np.array_equal(outs[0], outs[1])


def test_track_states_records_each_ended_track_once_sorted() -> None:
    from streamanon.anonymize.base import TrackStates

    states: TrackStates[list[int]] = TrackStates(lambda s: {"frames": len(s)})
    states.start(7, [1, 2])
    states.start(3, [])
    assert states.get(-1) is None and states.get(5) is None  # untracked row, never started
    got = states.get(7)
    assert got is not None
    got.append(3)
    assert states.end(7) == [1, 2, 3]
    assert states.get(7) is None and states.end(7) is None  # ended once; a second end records nothing
    states.end(3)
    assert states.records() == [{"track_id": 3, "frames": 0}, {"track_id": 7, "frames": 3}]


def test_track_states_keep_records_up_to_a_limit_and_report_live_tracks() -> None:
    states: TrackStates[list[int]] = TrackStates(lambda s: {"n": len(s)}, limit=2)
    for tid in (5, 3, 9, 1):
        states.start(tid, [tid])
    assert states.get(-1) is None and states.get(7) is None and len(states) == 4
    assert states.end(9) == [9] and states.end(3) == [3] and states.end(5) == [5]  # the third is not kept
    assert states.end(9) is None  # ended once
    assert states.ended == 3 and len(states) == 1
    assert states.records() == [{"track_id": 3, "n": 1}, {"track_id": 9, "n": 1}]
    unlimited: TrackStates[int] = TrackStates(lambda s: {"v": s})
    unlimited.start(4, 40)
    unlimited.start(2, 20)
    unlimited.end(4)
    assert unlimited.records(live=True) == [{"track_id": 4, "v": 40}, {"track_id": 2, "v": 20}]
