"""End to end on an archive of real clips and photos (copied from the shared data) with broken files.

Covers: the batch completes despite corrupt and non-media files, outputs decode with the
input's frame count and are anonymised, failures carry reasons, a second run does nothing,
a SIGKILLed run resumes without duplicate work or half files, and Ray gives the same result.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import batch_helpers
import numpy as np
import psutil
import pytest
from batch_helpers import (
    NOTES,
    RANDOM_MP4,
    REAL_FILES,
    TRUNCATED,
    decoded_count,
    decoded_frames,
    partials,
    rows,
    sha,
)

from streamanon.batch import MANIFEST_NAME, BatchOptions, run_batch
from streamanon.batch.worker import Task
from streamanon.cli import main as cli_main
from streamanon.config import DetectConfig
from streamanon.detect import create_detector
from streamanon.errors import DecodeError
from streamanon.runner import partial_output

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_run(real_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The archive processed once through the CLI with two worker processes."""
    out = tmp_path_factory.mktemp("out_local")
    code = cli_main(["batch", str(real_archive), "-o", str(out), "--jobs", "2", "-q"])
    return out, code


def test_batch_completes_and_records_failures(real_archive: Path, local_run: tuple[Path, int]) -> None:
    out, code = local_run
    got = rows(out)
    for rel in REAL_FILES:
        assert got[rel]["status"] == "done", (rel, got[rel]["error"])
        assert got[rel]["output_hash"] == sha(out / rel) and got[rel]["content_hash"] == sha(real_archive / rel)
    trunc = got[TRUNCATED]
    assert trunc["status"] == "failed" and trunc["error_type"] == "DecodeError" and "truncated" in trunc["error"]
    assert 0 < trunc["frames"] < trunc["expected_frames"]
    # what decoded, anonymised, under the partial name: an incomplete output never takes the final name
    assert (out / partial_output(Path(TRUNCATED))).is_file() and not (out / TRUNCATED).exists()
    assert trunc["output_hash"] == sha(out / partial_output(Path(TRUNCATED)))
    bad = got[RANDOM_MP4]
    assert bad["status"] == "failed" and "not readable media" in bad["error"] and not (out / RANDOM_MP4).exists()
    for rel in (NOTES, "photos/README"):
        assert got[rel]["status"] == "skipped" and got[rel]["error"].startswith("not media"), rel
        assert not (out / rel).exists()
    assert code == DecodeError.exit_code  # non-zero: files failed; the largest code among them
    assert partials(out) == []


def test_outputs_decode_with_the_input_frame_count(real_archive: Path, local_run: tuple[Path, int]) -> None:
    out, _ = local_run
    got = rows(out)
    for rel in REAL_FILES:
        if rel.endswith(".jpg"):
            assert decoded_frames(out / rel)[0].shape == decoded_frames(real_archive / rel)[0].shape
        else:
            n = decoded_count(real_archive / rel)
            assert decoded_count(out / rel) == n == got[rel]["frames"], rel
    assert decoded_count(out / partial_output(Path(TRUNCATED))) == got[TRUNCATED]["frames"]


def _masked(src: np.ndarray, dst: np.ndarray, detector: Any) -> int:
    """Faces found in ``src`` whose centre is blacked out in ``dst`` (the default solid method)."""
    dets = detector([src])[0]
    boxes = [b for b, s in zip(dets.xyxy, dets.score, strict=True) if s >= 0.5]
    assert boxes, "the input must show a face"
    masked = 0
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        sl = np.s_[int(y0 + h / 4) : int(y1 - h / 4), int(x0 + w / 4) : int(x1 - w / 4)]
        assert src[sl].mean() > 40
        masked += int(dst[sl].mean() < 20)
    return masked if masked == len(boxes) else -1


def test_outputs_are_anonymised(real_archive: Path, local_run: tuple[Path, int]) -> None:
    out, _ = local_run
    detector = create_detector(DetectConfig())
    for rel in ("photos/obama.jpg", "photos/two_people.jpg", "asl/eat.mkv", "asl/deeper/want.mkv"):
        src, dst = decoded_frames(real_archive / rel), decoded_frames(out / rel)
        for i in (0, len(src) // 2):
            assert _masked(src[i], dst[i], detector) > 0, (rel, i)


def test_second_run_does_nothing(
    real_archive: Path, local_run: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    out, first_code = local_run
    before = rows(out)
    stats = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    code = cli_main(["batch", str(real_archive), "-o", str(out), "--jobs", "2", "-q"])
    text = capsys.readouterr().out
    assert code == first_code and "processed 0 files" in text
    after = rows(out)
    assert set(after) == set(before)
    for rel in before:
        for col in ("status", "run_id", "output_hash", "attempts", "updated_at"):
            assert after[rel][col] == before[rel][col], (rel, col)
    assert {p: p.stat().st_mtime_ns for p in stats} == stats


def _wait_mid_file(out: Path, proc: subprocess.Popen[bytes], timeout: float = 240) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"batch finished before it could be killed (rc={proc.returncode})")
        try:
            got = rows(out)
        except sqlite3.Error:  # not created yet
            got = {}
        statuses = [r["status"] for r in got.values()]
        # one file finished, the next one is being written (its temp file exists)
        if "done" in statuses and "running" in statuses and partials(out):
            return got
        time.sleep(0.1)
    pytest.fail("the batch did not get mid-way in time")


def test_sigkill_mid_run_then_resume(tmp_path: Path, data_dir: Path) -> None:
    arch, out = tmp_path / "arch", tmp_path / "out"
    arch.mkdir()
    names = ["eat.mkv", "milk.mkv", "thanks.mkv"]
    for name in names:
        shutil.copyfile(data_dir / "videos" / "intel_asl_gestures" / name, arch / name)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamanon", "batch", str(arch), "-o", str(out), "--jobs", "1", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        _wait_mid_file(out, proc)
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == [], "worker processes must die with the driver (no orphan keeps writing)"

    at_kill = rows(out)
    half = partials(out)
    assert half, "the killed run leaves its temp file (never under the final name)"
    done_before = {rel for rel, r in at_kill.items() if r["status"] == "done"}
    assert done_before and len(done_before) < len(names)
    kept = {rel: (out / rel).stat() for rel in done_before}
    for p in out.iterdir():  # whatever has a final name is a complete output
        if p.is_file() and not p.name.startswith("."):
            assert decoded_count(p) == decoded_count(arch / p.name), p.name

    r = run_batch(BatchOptions(arch, out, jobs=1, progress=False))
    assert r.processed == len(names) - len(done_before) and r.done == r.processed
    assert len(r.interrupted) == 1 and set(r.interrupted).isdisjoint(done_before)
    assert r.partials_removed == len(half)
    final = rows(out)
    assert all(final[n]["status"] == "done" for n in names)
    for rel in done_before:  # no duplicate work: finished files were left alone
        assert final[rel]["run_id"] == at_kill[rel]["run_id"] == 1
        st = (out / rel).stat()
        assert (st.st_ino, st.st_mtime_ns) == (kept[rel].st_ino, kept[rel].st_mtime_ns)
    assert partials(out) == []
    for n in names:
        assert decoded_count(out / n) == decoded_count(arch / n)


def test_sigterm_stops_workers_and_records_the_interruption(tmp_path: Path, data_dir: Path) -> None:
    arch, out = tmp_path / "arch", tmp_path / "out"
    arch.mkdir()
    for name in ("eat.mkv", "milk.mkv"):
        shutil.copyfile(data_dir / "videos" / "intel_asl_gestures" / name, arch / name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamanon", "batch", str(arch), "-o", str(out), "--jobs", "1", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if any(r["status"] == "running" for r in rows(out).values()):
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and b"interrupted" in err, (proc.returncode, err.decode(errors="replace"))
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []
    got = rows(out)
    assert {r["status"] for r in got.values()} <= {"pending", "done"}  # nothing left "running"
    db = sqlite3.connect(f"file:{out / MANIFEST_NAME}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT outcome FROM runs").fetchall() == [("interrupted",)]
    finally:
        db.close()
    for p in out.iterdir():
        if p.is_file() and not p.name.startswith("."):
            assert decoded_count(p) == decoded_count(arch / p.name)  # never a half file under a final name


@pytest.mark.cluster
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::PendingDeprecationWarning")
def test_ray_engine_same_manifest_and_retries(real_archive: Path, local_run: tuple[Path, int], tmp_path: Path) -> None:
    """One Ray session: the archive on 2 Ray workers, then worker deaths with a fake task."""
    ray = pytest.importorskip("ray")
    from streamanon.batch.ray_engine import RayEngine

    local_out, _ = local_run
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        r = run_batch(BatchOptions(real_archive, out, engine="ray", jobs=2, progress=False))
        assert ray.is_initialized(), "the engine leaves alone a Ray instance it did not start"

        ray.cloudpickle.register_pickle_by_value(batch_helpers)  # the workers cannot import test modules
        results: dict[str, Any] = {}
        marks = tmp_path / "marks"
        tasks = [
            Task(n, n, str(marks / n), str(marks), "{}", "video") for n in ("once.mp4", "always_crash.mp4", "fine.mp4")
        ]
        RayEngine(jobs=2, max_retries=1, task_fn=batch_helpers.crash_once_task).run(
            tasks, lambda t: None, lambda t, res: results.__setitem__(t.rel, res)
        )
    finally:
        ray.shutdown()
    assert results["once.mp4"].status == "done" and (marks / "once.mp4.attempted").exists()  # retried after dying
    assert results["fine.mp4"].status == "done"
    assert results["always_crash.mp4"].status == "failed" and results["always_crash.mp4"].error_type == "WorkerCrashed"

    local, remote = rows(local_out), rows(out)
    assert set(local) == set(remote)
    for rel in local:
        for col in (
            "status",
            "kind",
            "frames",
            "expected_frames",
            "faces",
            "error_type",
            "content_hash",
            "settings_hash",
        ):
            assert local[rel][col] == remote[rel][col], (rel, col)
    assert r.exit_code == DecodeError.exit_code and r.processed == 6
    # Output bytes are not compared for videos: Matroska embeds a random segment UID, and the
    # detector's batching follows thread timing. Decoded pixels must agree; stills are byte-identical.
    for rel in [*REAL_FILES, str(partial_output(Path(TRUNCATED)))]:
        a, b = decoded_frames(local_out / rel), decoded_frames(out / rel)
        assert len(a) == len(b), rel
        diff = max(float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(a, b, strict=True))
        assert diff < 0.5, (rel, diff)
        if rel.endswith(".jpg"):
            assert local[rel]["output_hash"] == remote[rel]["output_hash"], rel
