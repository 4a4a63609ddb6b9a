"""The live loop with scripted inputs and detectors (no server): reconnection, stall filler,
latest-frame-wins, fail-closed frames, interruption, segments. Outputs are real files."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from live_helpers import decode_all
from numpy.typing import NDArray

from streamanon.config import PipelineConfig
from streamanon.detect import Detector
from streamanon.errors import (
    AnonymizationError,
    DecodeError,
    SinkError,
    SourceError,
    SourceOpenError,
    SourceTimeoutError,
)
from streamanon.io import SourceInfo
from streamanon.live import (
    Backoff,
    InputSpec,
    LiveMetrics,
    LiveOptions,
    LiveOutput,
    LiveRunner,
    LiveSource,
    output_spec,
)
from streamanon.live.output import Geometry
from streamanon.pipeline import Interrupted, Stages
from streamanon.types import Detections, Frame

W, H = 320, 240
FACE = (100, 60, 180, 160)  # x0, y0, x1, y1 of the synthetic face
NET = InputSpec("rtsp://user:pw@cam/x", "network", None, {}, 1.0, 1.0)
STDIN = InputSpec("pipe:0", "stdin", "mpegts", {})


def face_image(i: int) -> NDArray[np.uint8]:
    """Background gradient with a bright, textured square where the detector will 'find' a face."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([(xx + i) % 256, (yy * 2) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)
    rng = np.random.default_rng(i)
    x0, y0, x1, y1 = FACE
    img[y0:y1, x0:x1] = rng.integers(150, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
    return img


class FakeInput:
    """A scripted ``FrameSource``: ``frames`` frames at ``fps``, then eof, a stall or an error."""

    def __init__(
        self, frames: int, end: str = "eof", *, fps: float = 50.0, stall_s: float = 0.0, start: int = 0
    ) -> None:
        self.frames, self.end, self.fps, self.stall_s, self.start = frames, end, fps, stall_s, start
        self.info = SourceInfo("fake", "fake", W, H, Fraction(1, 25), Fraction(25), 0, None, 0, "fake")
        self.closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            time.sleep(1 / self.fps)
            if self.closed:
                return
            yield Frame(face_image(self.start + i), i, pts=i, time_base=Fraction(1, 25), wallclock=time.monotonic())
        if self.end == "stall":
            time.sleep(self.stall_s)
            raise SourceTimeoutError("read timed out", source="fake")
        if self.end == "error":
            raise DecodeError("corrupt", source="fake")

    def close(self) -> None:
        self.closed = True


class Script:
    """An opener returning scripted inputs in turn (exceptions are raised); then refusing."""

    def __init__(self, *sessions: FakeInput | Exception) -> None:
        self.sessions = list(sessions)
        self.opened = 0

    def __call__(self, spec: InputSpec) -> FakeInput:
        self.opened += 1
        if not self.sessions:
            raise SourceOpenError("connection refused: rtsp://user:pw@cam/x", source=spec.uri)
        item = self.sessions.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def find_face(images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
    return [Detections(np.array([FACE], np.float32), np.array([0.9], np.float32)) for _ in images]


def slow_find_face(images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
    time.sleep(0.08 * len(images))
    return find_face(images)


def broken_detector(images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
    raise RuntimeError("model exploded")


def runner(
    tmp_path: Path, opener: Script, *, detector: Detector = find_face, spec: InputSpec = NET, **kw: object
) -> LiveRunner:
    kw.setdefault("max_retries", 1)
    opts = LiveOptions(backoff_initial=0.1, backoff_max=0.2, stall_after=0.2, **kw)  # type: ignore[arg-type]
    config = PipelineConfig()
    return LiveRunner(
        config,
        opts,
        spec,
        output_spec(str(tmp_path / "out.mkv"), opts),
        stages=Stages(config, detector=detector),
        opener=opener,
    )


def assert_face_masked(images: list[NDArray[np.uint8]]) -> None:
    x0, y0, x1, y1 = FACE
    inner = (slice(y0 + 10, y1 - 10), slice(x0 + 10, x1 - 10))
    for i, img in enumerate(images):
        region = img[inner].astype(np.float32)
        assert region.mean() < 20 and region.std() < 12, f"frame {i}: face region not masked (mean {region.mean():.0f})"


def test_reconnects_fills_stalls_and_writes_only_anonymised_frames(tmp_path: Path) -> None:
    opener = Script(FakeInput(25, "stall", stall_s=0.6), SourceOpenError("refused"), FakeInput(25, "eof", start=1000))
    r = runner(tmp_path, opener, max_retries=2)
    with pytest.raises(SourceOpenError) as info:  # gave up after the script (2 retries)
        r.run()
    report = info.value.report  # type: ignore[attr-defined]
    m = report.metrics
    images = decode_all(tmp_path / "out.mkv")
    assert_face_masked(images)
    assert m["frames_in"] == 50 and m["frames_out"] + m["frames_dropped"] == 50
    assert m["frames_filler"] > 0 and len(images) == m["frames_out"] + m["frames_filler"]
    assert m["reconnects"] == 1 and m["faces"] == m["frames_out"]
    kinds = [e["kind"] for e in report.events]
    assert kinds[0] == "connected" and "stalled" in kinds and "reconnected" in kinds and kinds[-1] == "gave_up"
    assert report.stopped_by == "error"
    text = report.to_json(PipelineConfig())
    assert "user:pw" not in text and "rtsp://***@cam/x" in text


def test_black_filler_while_the_input_is_down(tmp_path: Path) -> None:
    opener = Script(FakeInput(15, "stall", stall_s=0.8))
    with pytest.raises(SourceError):
        runner(tmp_path, opener, on_stall="black", max_retries=0, reconnect=False).run()
    images = decode_all(tmp_path / "out.mkv")
    black = [img for img in images if img.mean() < 3]
    assert black, "no black filler written during the stall"
    assert_face_masked(images)


def test_detector_failure_masks_whole_frames_and_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AnonymizationError) as info:
        runner(tmp_path, Script(FakeInput(12, "eof")), detector=broken_detector, spec=STDIN).run()
    report = info.value.report  # type: ignore[attr-defined]
    images = decode_all(tmp_path / "out.mkv")
    assert images and all(img.max() < 16 for img in images)
    assert report.metrics["frames_failed"] == report.metrics["frames_out"] == len(images)
    assert report.stopped_by == "end"


def test_latest_frame_wins_when_processing_falls_behind(tmp_path: Path) -> None:
    rep = runner(tmp_path, Script(FakeInput(60, "eof", fps=100)), detector=slow_find_face, spec=STDIN).run()
    m = rep.metrics
    assert m["frames_dropped"] > 20, m
    assert m["frames_out"] + m["frames_dropped"] == m["frames_in"] == 60
    assert_face_masked(decode_all(tmp_path / "out.mkv"))


def test_no_drop_processes_every_frame(tmp_path: Path) -> None:
    rep = runner(tmp_path, Script(FakeInput(30, "eof", fps=100)), detector=slow_find_face, spec=STDIN, drop=False).run()
    assert rep.metrics["frames_dropped"] == 0 and rep.metrics["frames_out"] == 30
    assert rep.stopped_by == "end"


def test_interrupt_finalises_the_output(tmp_path: Path) -> None:
    r = runner(tmp_path, Script(FakeInput(10**6, "eof", fps=25)))
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(Interrupted) as info:
            r.run()
    finally:
        timer.cancel()
    assert info.value.report.stopped_by == "interrupted"  # type: ignore[attr-defined]
    images = decode_all(tmp_path / "out.mkv")
    assert len(images) >= 5
    assert_face_masked(images)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mkv"]  # temp file renamed


def test_duration_stops_normally(tmp_path: Path) -> None:
    rep = runner(tmp_path, Script(FakeInput(10**6, "eof", fps=25)), duration=1.5).run()
    assert rep.stopped_by == "duration" and rep.metrics["frames_out"] > 0


def test_live_source_indexes_across_reconnects_and_stops_promptly() -> None:
    m = LiveMetrics()
    src = LiveSource(
        NET, m, opener=Script(FakeInput(5, "error"), FakeInput(10**6, "eof")), backoff=Backoff(0.05, 0.05), drop=False
    )
    src.start()
    frames = src.frames()
    got = [next(frames) for _ in range(12)]
    assert [f.index for f in got] == list(range(12))
    t0 = time.monotonic()
    src.stop()
    assert len(list(frames)) <= 1  # at most the one queued frame, then the iterator ends
    assert time.monotonic() - t0 < 1.0
    assert src.join(2.0)
    assert m.count("reconnects") == 1 and m.count("source_errors") == 1


def test_live_source_gives_up_after_max_retries() -> None:
    m = LiveMetrics()
    opener = Script()
    src = LiveSource(NET, m, opener=opener, max_retries=2, backoff=Backoff(0.01, 0.01))
    src.start()
    assert list(src.frames()) == []
    assert isinstance(src.error, SourceOpenError) and opener.opened == 3
    assert "pw" not in " ".join(e.message for e in src.events)


def test_segments_are_complete_files_with_unique_names(tmp_path: Path) -> None:
    opts = LiveOptions(segment=0.5)
    out = LiveOutput(output_spec(str(tmp_path / "cam.mp4"), opts), PipelineConfig().io, LiveMetrics(), segment=0.5)
    geo = Geometry(W, H, 25.0)
    t0 = 1000.0
    for i in range(40):  # 1.6 s of frames: segments of 0.5 s
        out.write(face_image(i), t0 + i * 0.04, geo)
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cam-00001.mp4", "cam-00002.mp4", "cam-00003.mp4", "cam-00004.mp4"]
    assert sum(len(decode_all(tmp_path / n)) for n in names) == 40
    assert out.segments == [str(tmp_path / n) for n in names]


def test_segment_names_from_a_coarse_pattern_do_not_collide(tmp_path: Path) -> None:
    opts = LiveOptions(segment=0.5)
    out = LiveOutput(output_spec(str(tmp_path / "day-%Y.mp4"), opts), PipelineConfig().io, LiveMetrics(), segment=0.5)
    for i in range(30):
        out.write(face_image(i), i * 0.04, Geometry(W, H, 25.0))
    out.close()
    year = time.strftime("%Y")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"day-{year}-1.mp4", f"day-{year}-2.mp4", f"day-{year}.mp4"]


def test_network_output_failure_is_retried_or_raised(tmp_path: Path) -> None:
    from live_helpers import free_port

    opts = LiveOptions(open_timeout=1)
    spec = output_spec(f"rtsp://127.0.0.1:{free_port()}/nobody", opts)
    m = LiveMetrics()
    out = LiveOutput(spec, PipelineConfig().io, m, reconnect=True, backoff=Backoff(5, 5))
    assert out.write(face_image(0), 0.0, Geometry(W, H, 25.0)) is False
    assert out.write(face_image(1), 0.04, Geometry(W, H, 25.0)) is False  # waiting for the retry: dropped
    assert m.count("output_errors") == 1
    out.close()
    strict = LiveOutput(spec, PipelineConfig().io, m, reconnect=False)
    with pytest.raises(SinkError):
        strict.write(face_image(0), 0.0, Geometry(W, H, 25.0))


def test_file_input_is_paced_and_looped() -> None:
    spec = InputSpec("clip.mp4", "file", None, {})
    opener = Script(FakeInput(10, "eof", fps=1000), FakeInput(10, "eof", fps=1000))
    src = LiveSource(spec, LiveMetrics(), opener=opener, loop=True, drop=False)
    t0 = time.monotonic()
    src.start()
    frames = list(src.frames())
    elapsed = time.monotonic() - t0
    assert [f.index for f in frames] == list(range(20))  # two passes, indexed continuously
    assert elapsed >= 2 * 9 / 25 - 0.05  # each pass takes its real duration (pts at 25 fps)
    assert isinstance(src.error, SourceOpenError) and opener.opened == 3
