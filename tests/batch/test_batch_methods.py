"""The guaranteed methods through ``streamanon batch``: per-file runs, per-file pools."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from streamanon.batch.manifest import MANIFEST_NAME
from streamanon.cli import main as cli_main


@pytest.fixture
def faces_archive(tmp_path: Path, data_dir: Path) -> Path:
    """Two short real clips with faces (first 12 frames each), re-encoded into an archive."""
    arch = tmp_path / "arch"
    arch.mkdir()
    for name in ("intel_asl_gestures/eat.mkv", "intel_asl_gestures/milk.mkv"):
        src = data_dir / "videos" / name
        with av.open(str(src)) as c, av.open(str(arch / (src.stem + ".mp4")), "w") as out:
            s = out.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = 640, 480, "yuv420p"
            for i, f in enumerate(c.decode(video=0)):
                if i >= 12:
                    break
                for p in s.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
    return arch


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("method", [["dp-pixelate"], ["svd"], ["k-same", "--k", "5", "--face-bank", "BANK"]], ids=lambda m: m[0])
def test_batch_with_a_guaranteed_method(method: list[str], faces_archive: Path, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    method = [str(data_dir / "identities" / "dlib_johns") if a == "BANK" else a for a in method]
    code = cli_main(["batch", str(faces_archive), "-o", str(out), "--jobs", "1", "-q", "--method", *method])
    assert code == 0
    for src in sorted(faces_archive.glob("*.mp4")):
        raw, anon = _frames(src), _frames(out / src.name)
        assert len(raw) == len(anon) == 12
        changed = np.mean([np.abs(a.astype(int) - r.astype(int)).mean() for a, r in zip(anon, raw)])
        assert changed > 1.0  # the faces were replaced (the rest of the frame is re-encoded only)
        # no method fell back to the solid (black) mask: a file's pool is its tracks plus the bank
        assert max(float((a.max(axis=-1) < 8).mean()) for a in anon) < 0.01
    with sqlite3.connect(out / MANIFEST_NAME) as db:
        settings = {json.loads(row[0])["anonymize"]["method"] for row in db.execute("select settings from runs")}
    assert settings == {method[0]}
