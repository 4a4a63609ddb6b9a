"""``--verify``: a weak setting is caught on a real clip, ``solid`` passes, no dlib -> exit 9.

The clip is the first frames of the shared talking-head clip (one large frontal face),
re-encoded into the test's temporary folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from mediautil import reencode

from streamanon.audit import TrackAudit
from streamanon.cli import main
from streamanon.errors import MissingDependencyError, VerificationError
from streamanon.types import SOURCE_DETECTOR, SOURCE_TRACK, Detections
from streamanon.verify import LiveVerifier, Verdict, Verifier

pytest.importorskip("dlib")
FACE_CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"


@pytest.fixture(scope="module")
def face_clip(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "face.mp4"
    reencode(data_dir / FACE_CLIP, path, 24)
    return path


def _run(args: list[str]) -> int:
    return main([*args, "-q"])


def test_weak_blur_is_caught_and_solid_passes(face_clip: Path, tmp_path: Path) -> None:
    weak, rep_weak = tmp_path / "weak.mp4", tmp_path / "weak.json"
    code = _run([str(face_clip), "-o", str(weak), "--method", "blur", "--blur-strength", "0.1"])
    assert code == 0, "without --verify the weak setting is not noticed"
    weak_args = [str(face_clip), "-o", str(weak), "--method", "blur", "--blur-strength", "0.1"]
    code = _run([*weak_args, "--verify-every", "4", "--report", str(rep_weak)])
    assert code == VerificationError.exit_code == 10
    assert weak.is_file(), "the output is kept for the user to inspect"
    s = json.loads(rep_weak.read_text())["summary"]
    v = s["verify"]
    assert not v["passed"] and v["frames_checked"] == 6 and v["every"] == 4
    assert v["faces_found"] >= 4 and v["faces_matching"] >= 1
    assert v["worst_distance"] < v["threshold"] and v["worst_frame"] in v["matching_frames"]
    # the audit: the face's track served by blur on every frame, with what --verify found there
    (track,) = [t for t in s["audit"]["tracks"] if t["frames"] > 12]
    assert track["served"] == {"blur": track["frames"]} and track["fallback_frames"] == 0
    assert track["verify"]["faces_matching"] >= 1
    assert track["verify"]["min_distance"] == pytest.approx(v["worst_distance"], abs=1e-3)

    good, rep_good = tmp_path / "solid.mp4", tmp_path / "solid.json"
    code = _run([str(face_clip), "-o", str(good), "--method", "solid", "--verify", "--report", str(rep_good)])
    assert code == 0
    v = json.loads(rep_good.read_text())["summary"]["verify"]
    assert v["passed"] and v["frames_checked"] == 24 and v["faces_matching"] == 0


def test_a_missed_face_is_a_match_of_no_track(face_clip: Path) -> None:
    """The output is the input (a detector that saw nothing): every face found matches, on no track."""
    verifier = Verifier(every=8)
    verdict = verifier.check_file(face_clip, face_clip)
    assert verdict.frames_checked == 3 and verdict.faces_found == 3 and verdict.faces_matching == 3
    assert verdict.worst_distance is not None and verdict.worst_distance < 0.05
    assert set(verdict.per_track) == {-1}


def test_verify_without_dlib_exits_9(face_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # "import dlib" raises ImportError
    out = tmp_path / "o.mp4"
    assert _run([str(face_clip), "-o", str(out), "--verify"]) == MissingDependencyError.exit_code == 9
    assert not out.exists(), "nothing is written before the verifier loads"


def test_verify_flag_errors(face_clip: Path, tmp_path: Path) -> None:
    assert _run([str(face_clip), "-o", str(tmp_path / "o.mp4"), "--verify-every", "-1"]) == 2
    assert _run([str(face_clip), "-o", str(tmp_path / "o.mp4"), "--verify", "--verify-every", "0"]) == 2  # 0: off
    assert _run(["rtsp://127.0.0.1:1/x", "-o", str(tmp_path / "o.mp4"), "--verify"]) == 2


def test_verdict_counts() -> None:
    v = Verdict(every=2, threshold=0.6)
    v.add(3, 1, 0.8)
    v.add(5, 1, 0.4)
    v.add(5, -1, 0.5)
    v.add(9, 2, 0.7)
    d = v.to_dict()
    assert not v.passed and d["faces_found"] == 4 and d["faces_matching"] == 2
    assert d["worst_distance"] == 0.4 and d["worst_frame"] == 5 and d["matching_frames"] == [5]
    assert d["per_track"]["1"] == {"faces_found": 2, "faces_matching": 1, "min_distance": 0.4}
    assert d["per_track"]["-1"]["faces_matching"] == 1 and d["per_track"]["2"]["faces_matching"] == 0
    assert "FAIL" in v.line() and "0.400 (frame 5)" in v.line()
    assert v.error("x.mp4").exit_code == 10


def test_track_mapping() -> None:
    ids = np.array([4, 7], np.int64)
    boxes = np.array([[0, 0, 100, 100], [200, 0, 300, 100]], np.float32)
    assert Verifier._track_of(np.array([10, 10, 90, 95], np.float32), ids, boxes) == 4
    assert Verifier._track_of(np.array([230, 20, 260, 60], np.float32), ids, boxes) == 7  # centre inside
    assert Verifier._track_of(np.array([400, 0, 500, 100], np.float32), ids, boxes) == -1


def test_track_audit_joins_served_and_verify() -> None:
    a = TrackAudit(keep_boxes=True)
    box = [[10, 10, 50, 50]]
    for i in range(5):
        src = SOURCE_DETECTOR if i % 2 == 0 else SOURCE_TRACK
        a.add(i, Detections(box, [0.9], track_id=[3], source=[src]))
    a.add(5, Detections.empty(), failed="detector: boom")
    a.add(6, Detections(box, [0.9]))  # untracked row
    anon = {"per_track": [{"track_id": 3, "served": {"generate": 3, "generate-carried": 1, "blur": 1}}]}
    (rec,) = a.records("generate", anon, {"3": {"faces_found": 1, "faces_matching": 0, "min_distance": 0.9}})
    assert rec["frames"] == 5 and rec["detected_frames"] == 3 and rec["coasted_frames"] == 2
    assert rec["first_frame"] == 0 and rec["last_frame"] == 4
    assert rec["fallback_frames"] == 1 and rec["verify"]["min_distance"] == 0.9
    assert a.summary() == {"tracks": 1, "frames_masked_whole": 1, "untracked_faces": 1}
    ids, xyxy = a.boxes(2)
    assert ids.tolist() == [3] and xyxy.shape == (1, 4)
    (plain,) = a.records("blur")
    assert plain["served"] == {"blur": 5} and "verify" not in plain


class _SlowVerifier:
    every = 1
    threshold = 0.6

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.calls: list[int] = []

    def check_frame(self, verdict: Verdict, index: int, *rest: object) -> None:
        self.gate.wait(5)
        self.calls.append(index)
        verdict.frames_checked += 1


def test_live_verifier_never_blocks_and_counts_skips() -> None:
    fake = _SlowVerifier()
    live = LiveVerifier(fake, every=2)  # type: ignore[arg-type]
    img = np.zeros((8, 8, 3), np.uint8)
    for i in range(10):  # even frames offered; the worker is held, so the queue (1) fills
        live.offer(i, img, img, np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    fake.gate.set()
    v = live.close()
    assert v.every == 2 and v.frames_checked + v.frames_skipped == 5
    assert v.frames_skipped >= 3 and fake.calls[0] == 0
