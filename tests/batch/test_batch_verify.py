"""``batch --verify``: files done earlier without it are redone with it, an output that fails
it leaves the final name, and the driver never loads the verifier's models."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import rows
from mediautil import reencode

from streamanon.batch import worker
from streamanon.batch.driver import BatchOptions, run_batch
from streamanon.batch.worker import Task, TaskResult, process_task
from streamanon.cli import main as cli_main
from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.errors import VerificationError
from streamanon.runner import partial_output
from streamanon.verify import Verdict, Verifier

FACE_CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"


class _InProcess:
    """The local engine's contract, run in this process (so that fakes patched here apply)."""

    name = "inprocess"
    jobs = 1

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def run(self, tasks: Sequence[Task], on_start: Any, on_done: Any) -> None:
        for task in tasks:
            self.tasks.append(task)
            on_start(task)
            on_done(task, process_task(task))


class _FakeVerifier:
    """Stands for dlib's verifier: every checked output has ``matching`` faces of the input."""

    error_from = staticmethod(Verifier.error_from)

    def __init__(self, matching: int) -> None:
        self.matching = matching
        self.every = 1

    def check_file(self, src: Any, dst: Any, boxes: Any = None) -> Verdict:
        v = Verdict(1, 0.6, frames_checked=4)
        for _ in range(self.matching):
            v.add(0, -1, 0.2)
        return v


@pytest.fixture
def archive(data_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "sub").mkdir(parents=True)
    reencode(data_dir / FACE_CLIP, root / "sub" / "face.mp4", 4)
    return root


def _verifier_finds(monkeypatch: pytest.MonkeyPatch, matching: int) -> None:
    """Workers verify with a ``_FakeVerifier(matching)`` when asked to verify."""
    monkeypatch.setattr(worker, "_verifier", lambda every: _FakeVerifier(matching) if every else None)


def _run(archive: Path, out: Path, verify_every: int) -> tuple[Any, _InProcess]:
    engine = _InProcess()
    config = PipelineConfig(anonymize=AnonymizeConfig(method="solid"))
    opts = BatchOptions(archive, out, config, progress=False, verify_every=verify_every)
    return run_batch(opts, engine=engine), engine


def test_a_file_done_without_verify_is_redone_with_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verifier_finds(monkeypatch, 0)
    out = tmp_path / "out"
    first, _ = _run(archive, out, 0)
    assert first.done == 1 and rows(out)["sub/face.mp4"]["verify_passed"] is None
    again, engine = _run(archive, out, 1)  # asked to verify: the earlier output was never checked
    assert [t.rel for t in engine.tasks] == ["sub/face.mp4"] and again.up_to_date == 0
    assert rows(out)["sub/face.mp4"]["verify_passed"] == 1
    third, engine = _run(archive, out, 1)  # verified now: up to date
    assert engine.tasks == [] and third.up_to_date == 1
    fourth, engine = _run(archive, out, 0)  # and a run without --verify has nothing to redo
    assert engine.tasks == [] and fourth.up_to_date == 1


def test_an_output_failing_verify_leaves_the_final_name(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verifier_finds(monkeypatch, 2)
    result, _ = _run(archive, tmp_path / "out", 1)
    out = tmp_path / "out"
    assert result.failed == 1 and result.exit_code == VerificationError.exit_code
    kept = partial_output(Path("sub/face.mp4"))
    assert not (out / "sub" / "face.mp4").exists()  # never under the name of a finished file
    assert (out / kept).is_file()
    row = rows(out)["sub/face.mp4"]
    assert row["status"] == "failed" and row["error_type"] == "VerificationError" and row["verify_passed"] == 0
    assert row["output"] == kept.as_posix() and row["output_hash"] is not None
    assert kept.name in row["error"]


def test_a_worker_sets_aside_an_output_failing_verify(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verifier_finds(monkeypatch, 1)
    out = tmp_path / "out"
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="solid")).to_json()
    src, dst = archive / "sub" / "face.mp4", out / "sub" / "face.mp4"
    res: TaskResult = process_task(Task("sub/face.mp4", str(src), str(dst), str(out), cfg, "video", verify_every=1))
    assert res.status == "failed" and res.exit_code == VerificationError.exit_code
    assert not dst.exists() and partial_output(dst).is_file() and res.output == "sub/face.partial.mp4"


def test_the_driver_does_not_load_the_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed")
    built: list[Any] = []

    class _Spy(Verifier):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("streamanon.verify.Verifier", _Spy)
    archive = tmp_path / "a"
    archive.mkdir()
    (archive / "notes.txt").write_text("not media\n")
    assert cli_main(["batch", str(archive), "-o", str(tmp_path / "out"), "-q", "--verify-every", "2"]) == 0
    assert built == []  # no file to verify: dlib's models were never loaded
    assert cli_main(["batch", str(archive), "-o", str(tmp_path / "o2"), "-q", "--verify-every", "-1"]) == 2  # (0: off)
