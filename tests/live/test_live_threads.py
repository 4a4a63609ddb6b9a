"""Threads of live runs and of ``streamanon streams`` end on every path (``_workers``):
the shared detector's workers are joined when the metrics port cannot be bound and fail
their callers at once when they break; a live run leaves no thread behind."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_live_runner import FakeInput, Script, find_face, runner

from streamanon.config import PipelineConfig
from streamanon.errors import ConfigError
from streamanon.live.shared_detector import BatchingDetector
from streamanon.live.streams import run_streams
from streamanon.pipeline import Stages
from streamanon.types import Detections


def streamanon_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("streamanon-")]


def no_faces(images: Sequence[np.ndarray]) -> list[Detections]:
    return [Detections.empty() for _ in images]


def test_shared_detector_threads_end_when_the_metrics_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        toml = tmp_path / "s.toml"
        toml.write_text(
            f'metrics_port = {port}\n[[stream]]\nname = "door"\ninput = "rtsp://127.0.0.1:1/x"\n'
            f'output = "{tmp_path / "door.mp4"}"\n'
        )
        stages = Stages(PipelineConfig(), detector=no_faces)
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            run_streams(toml, quiet=True, stages=stages)
    assert streamanon_threads() == []  # the shared detector's workers were joined


@pytest.mark.timeout(20)
def test_a_broken_shared_detector_fails_its_callers_at_once_and_is_joined() -> None:
    def fit(width: int, height: int) -> None:
        raise RuntimeError("fit exploded")

    shared = BatchingDetector(no_faces, batch=2, workers=2, fit=fit)
    image = np.zeros((8, 8, 3), np.uint8)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="fit exploded"):
        shared([image])
    with pytest.raises(RuntimeError, match="closed"):  # fail closed: the feed's frame is masked
        shared([image])
    assert time.monotonic() - t0 < 5  # not the 30 s call timeout of a lost request
    shared.close()
    assert streamanon_threads() == []


def test_a_live_run_leaves_no_thread_behind(tmp_path: Path) -> None:
    rep = runner(tmp_path, Script(FakeInput(20, "eof")), detector=find_face, reconnect=False).run()
    assert rep.stopped_by == "end" and rep.metrics["frames_out"] > 0
    assert streamanon_threads() == []
    stats = rep.summary(PipelineConfig())["stats"]
    m = rep.metrics
    assert (stats["frames_in"], stats["frames_written"], stats["frames_dropped"]) == (
        m["frames_in"],
        m["frames_out"],
        m["frames_dropped"],
    )
    assert stats["faces"] == stats["detections"] == stats["frames"] >= m["frames_out"]
    assert stats["tracks"] == 1
