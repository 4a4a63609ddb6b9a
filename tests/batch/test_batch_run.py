"""The driver on small synthetic archives: resume rules, retries, folders, CLI and status."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batch_helpers import decoded_count, partials, rows

from streamanon.batch import (
    BatchOptions,
    BatchResult,
    batch_settings_hash,
    default_jobs,
    main,
    run_batch,
    threads_per_job,
)
from streamanon.batch.manifest import Manifest
from streamanon.batch.worker import _STAGES, Task, process_task
from streamanon.cli import main as cli_main
from streamanon.config import AnonymizeConfig, DetectConfig, PipelineConfig
from streamanon.errors import ConfigError, MissingDependencyError, SinkError, SourceOpenError


@pytest.fixture
def small(tmp_path: Path, clip_factory: Callable[..., Path]) -> Path:
    """Three tiny clips in a two-level archive, plus one text file."""
    arch = tmp_path / "arch"
    (arch / "a" / "b").mkdir(parents=True)
    clip_factory("arch/one.mp4", frames=6, width=96, height=64)
    clip_factory("arch/a/two.mp4", frames=5, width=96, height=64)
    clip_factory("arch/a/b/three.mp4", frames=4, width=96, height=64)
    (arch / "a" / "readme.txt").write_text("not media\n")
    return arch


def _run(arch: Path, out: Path, **kw: Any) -> BatchResult:
    return run_batch(BatchOptions(arch, out, progress=False, **kw))


def test_defaults_for_jobs_and_threads() -> None:
    assert [default_jobs(c) for c in (1, 2, 3, 8, 16)] == [1, 1, 1, 4, 8]
    assert (
        threads_per_job(1, 2) == 2
        and threads_per_job(2, 2) == 1
        and threads_per_job(4, 16) == 4
        and threads_per_job(8, 2) == 1
    )
    base = PipelineConfig()
    more_threads = dataclasses.replace(base, detect=DetectConfig(threads=7))
    other_method = dataclasses.replace(base, anonymize=AnonymizeConfig(method="blur"))
    assert batch_settings_hash(base) == batch_settings_hash(more_threads)  # --jobs must not force a redo
    assert batch_settings_hash(base) != batch_settings_hash(other_method)


def test_resume_rules(small: Path, tmp_path: Path, clip_factory: Callable[..., Path]) -> None:
    out = tmp_path / "out"
    r1 = _run(small, out, jobs=1)
    assert (r1.done, r1.failed, r1.skipped, r1.exit_code) == (3, 0, 1, 0)
    first = rows(out)
    assert first["a/readme.txt"]["status"] == "skipped" and "not media" in first["a/readme.txt"]["error"]
    for rel in ("one.mp4", "a/two.mp4", "a/b/three.mp4"):
        assert first[rel]["status"] == "done" and first[rel]["settings_hash"] and first[rel]["content_hash"]
        assert decoded_count(out / rel) == decoded_count(small / rel)
    assert not (out / "a" / "readme.txt").exists()  # skipped files are not copied

    r2 = _run(small, out, jobs=1)
    assert (r2.processed, r2.up_to_date) == (0, 3)

    # touched but identical: not redone; new content: redone; output deleted: redone
    os.utime(small / "one.mp4", ns=(1_000_000_000, 1_000_000_000))
    (small / "a" / "two.mp4").unlink()
    clip_factory("arch/a/two.mp4", frames=9, width=96, height=64)
    (out / "a" / "b" / "three.mp4").unlink()
    r3 = _run(small, out, jobs=2)  # other jobs/threads: same settings hash
    assert r3.processed == 2 and r3.up_to_date == 1
    third = rows(out)
    assert third["one.mp4"]["run_id"] == first["one.mp4"]["run_id"] and third["one.mp4"]["mtime_ns"] == 1_000_000_000
    assert (
        third["a/two.mp4"]["frames"] == 9 and third["a/two.mp4"]["content_hash"] != first["a/two.mp4"]["content_hash"]
    )
    assert decoded_count(out / "a" / "two.mp4") == 9 and (out / "a" / "b" / "three.mp4").is_file()

    # other settings: everything is redone
    r4 = run_batch(
        BatchOptions(
            small, out, config=PipelineConfig(anonymize=AnonymizeConfig(method="blur")), jobs=1, progress=False
        )
    )
    assert r4.processed == 3
    assert {row["settings_hash"] for rel, row in rows(out).items() if row["status"] == "done"} == {
        batch_settings_hash(PipelineConfig(anonymize=AnonymizeConfig(method="blur")))
    }
    # an input replaced by garbage fails, and its old output goes with it
    (small / "a" / "b" / "three.mp4").write_bytes(b"garbage" * 500)
    r5 = _run(small, out, jobs=1)
    assert r5.refused == 1 and rows(out)["a/b/three.mp4"]["status"] == "failed"
    assert not (out / "a" / "b" / "three.mp4").exists()
    # an input that left the archive is dropped from the manifest (its output is kept)
    (small / "one.mp4").unlink()
    r6 = _run(small, out, jobs=1)
    assert r6.forgotten == 1 and "one.mp4" not in rows(out) and (out / "one.mp4").exists()


def test_killed_run_is_redone_and_partials_removed(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(small, out, jobs=1)
    before = rows(out)
    with Manifest(out) as m:  # what a SIGKILL mid-file leaves behind
        m.update("a/two.mp4", status="running")
    stale = out / "a" / ".two.streamanon-partial.mp4"
    stale.write_bytes(b"half a file")
    r = _run(small, out, jobs=1)
    assert r.interrupted == ["a/two.mp4"] and r.partials_removed == 1 and r.processed == 1
    after = rows(out)
    assert after["a/two.mp4"]["status"] == "done" and after["a/two.mp4"]["run_id"] > before["a/two.mp4"]["run_id"]
    assert after["one.mp4"]["run_id"] == before["one.mp4"]["run_id"]
    assert partials(out) == []


def test_failure_policy(small: Path, tmp_path: Path) -> None:
    """Corrupt inputs are not retried as they are; environmental failures are."""
    out = tmp_path / "out"
    (small / "bad.mp4").write_bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (out / "a" / "two.mp4").mkdir(parents=True)  # the output path is taken by a folder: a SinkError
    r1 = _run(small, out, jobs=1)
    got = rows(out)
    assert got["bad.mp4"]["status"] == "failed" and "not readable media" in got["bad.mp4"]["error"]
    assert got["a/two.mp4"]["status"] == "failed" and got["a/two.mp4"]["error_type"] == "SinkError"
    assert got["a/two.mp4"]["retryable"] == 1 and got["bad.mp4"]["retryable"] == 0
    assert r1.exit_code == SinkError.exit_code  # the largest code among failures

    (out / "a" / "two.mp4").rmdir()
    r2 = _run(small, out, jobs=1)
    assert r2.processed == 1 and rows(out)["a/two.mp4"]["status"] == "done"
    assert r2.exit_code == SourceOpenError.exit_code  # bad.mp4 is still failed
    r3 = _run(small, out, jobs=1, retry_failed=True)
    assert r3.processed == 0 and r3.refused == 0  # probing rejects it again, quietly
    assert rows(out)["bad.mp4"]["status"] == "failed"


def test_folder_and_option_rules(small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SinkError, match="is the archive"):
        _run(small, small)
    with pytest.raises(SinkError, match="contains the archive"):
        _run(small, tmp_path)
    with pytest.raises(SourceOpenError, match="not found"):
        _run(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown method"):
        run_batch(BatchOptions(small, tmp_path / "o2", config=PipelineConfig(anonymize=AnonymizeConfig(method="nope"))))
    assert not (tmp_path / "o2").exists()
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        with pytest.raises(MissingDependencyError, match=r"streamanon\[cluster\]"):
            _run(small, tmp_path / "o3", engine="ray")
    assert not (tmp_path / "o3").exists()
    inner = small / "anonymised"  # an output folder inside the archive is allowed and never ingested
    _run(small, inner, jobs=1)
    r = _run(small, inner, jobs=1)
    assert r.processed == 0 and not any(k.startswith("anonymised") for k in rows(inner))


def test_process_task_builds_stages_once_and_never_raises(small: Path, tmp_path: Path) -> None:
    config_json = PipelineConfig(detect=DetectConfig(threads=1)).to_json()
    out = tmp_path / "o"

    def task(rel: str) -> Task:
        return Task(rel, str(small / rel), str(out / rel), str(out), config_json, "video")

    r1 = process_task(task("one.mp4"))
    stages = _STAGES[config_json]
    r2 = process_task(task("a/two.mp4"))
    assert (r1.status, r2.status) == ("done", "done") and _STAGES[config_json] is stages and len(_STAGES) == 1
    assert r1.frames == 6 and r1.output_hash and r1.content_hash and r1.size == (small / "one.mp4").stat().st_size
    missing = process_task(task("gone.mp4"))
    assert missing.status == "failed" and missing.error_type == "SourceOpenError" and not missing.retryable
    escape = process_task(
        Task("../x.mp4", str(small / "one.mp4"), str(tmp_path / "x.mp4"), str(out), config_json, "video")
    )
    assert escape.status == "failed" and escape.error_type == "SinkError" and not (tmp_path / "x.mp4").exists()


def test_cli_run_status_and_errors(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    (small / "bad.mp4").write_bytes(b"\x00" * 2000)
    code = cli_main(["batch", str(small), "-o", str(out), "--jobs", "1", "-q", "--method", "pixelate"])
    text = capsys.readouterr().out
    assert code == SourceOpenError.exit_code
    assert "3 done" in text and "bad.mp4: has a media extension but is not readable media" in text

    assert main(["--status", str(out)]) == 1
    status = capsys.readouterr().out
    assert "3 done, 1 failed, 1 skipped" in status and "bad.mp4:" in status and "1 not media" in status
    assert main(["--status", str(out), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (
        data["counts"]["done"] == 3
        and data["failed"][0]["path"] == "bad.mp4"
        and data["last_run"]["outcome"] == "completed"
    )

    (small / "bad.mp4").unlink()
    assert cli_main(["batch", str(small), "-o", str(out), "-q", "--method", "pixelate"]) == 0
    capsys.readouterr()
    for argv, msg in (
        (["batch", str(small)], "usage"),
        (["batch", str(small), "-o", str(out), "--jobs", "0"], "positive integer"),
        (["batch", str(small), "-o", str(out), "--ray-address", "x:1"], "--engine ray"),
        (["batch", "--status", str(tmp_path / "nothing")], "no batch manifest"),
        (["batch", "--status", str(out), str(small)], "only OUT_DIR"),
        (["batch", str(small), "-o", str(out), "--bogus"], "unrecognized"),
    ):
        assert cli_main(argv) == ConfigError.exit_code, argv
        assert msg in capsys.readouterr().err, argv
