"""The guaranteed methods through ``streamanon batch``: per-file runs, per-file pools."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from mediautil import decode, reencode

from streamanon.batch.manifest import MANIFEST_NAME
from streamanon.cli import main as cli_main


@pytest.fixture
def faces_archive(tmp_path: Path, data_dir: Path) -> Path:
    """Two short real clips with faces (first 12 frames each), re-encoded into an archive."""
    arch = tmp_path / "arch"
    arch.mkdir()
    for name in ("intel_asl_gestures/eat.mkv", "intel_asl_gestures/milk.mkv"):
        src = data_dir / "videos" / name
        reencode(src, arch / (src.stem + ".mp4"), 12, rate=30)
    return arch


@pytest.mark.parametrize(
    "method", [["dp-pixelate"], ["svd"], ["k-same", "--k", "5", "--face-bank", "BANK"]], ids=lambda m: m[0]
)
def test_batch_with_a_guaranteed_method(method: list[str], faces_archive: Path, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    method = [str(data_dir / "identities" / "dlib_johns") if a == "BANK" else a for a in method]
    code = cli_main(["batch", str(faces_archive), "-o", str(out), "--jobs", "1", "-q", "--method", *method])
    assert code == 0
    for src in sorted(faces_archive.glob("*.mp4")):
        raw, anon = decode(src)[0], decode(out / src.name)[0]
        assert len(raw) == len(anon) == 12
        changed = np.mean([np.abs(a.astype(int) - r.astype(int)).mean() for a, r in zip(anon, raw, strict=True)])
        assert changed > 1.0  # the faces were replaced (the rest of the frame is re-encoded only)
        # no method fell back to the solid (black) mask: a file's pool is its tracks plus the bank
        assert max(float((a.max(axis=-1) < 8).mean()) for a in anon) < 0.01
    with sqlite3.connect(out / MANIFEST_NAME) as db:
        settings = {json.loads(row[0])["anonymize"]["method"] for row in db.execute("select settings from runs")}
    assert settings == {method[0]}
