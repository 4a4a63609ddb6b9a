"""The guaranteed methods on a live feed (MPEG-TS on stdin to stdout): every frame anonymised,
the method's per-track report in the live report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from live_helpers import CodedClip, FaceChecker, Streamanon, decode_all, read_code, to_mpegts

N_FRAMES = 60


@pytest.mark.parametrize(
    "method",
    [["--method", "dp-pixelate"], ["--method", "svd"], ["--method", "k-same", "--k", "5", "--face-bank", "BANK"]],
    ids=lambda m: m[1],
)
def test_live_feed_with_a_guaranteed_method(
    method: list[str], tmp_path: Path, coded_clip: CodedClip, data_dir: Path, streamanon: Callable[..., Streamanon]
) -> None:
    args = [str(data_dir / "identities" / "dlib_johns") if a == "BANK" else a for a in method]
    ts = to_mpegts(coded_clip.path, tmp_path / "in.ts", N_FRAMES)
    out, report = tmp_path / "out.ts", tmp_path / "live.json"
    with ts.open("rb") as fin, out.open("wb") as fout:
        sa = streamanon(["-", "-o", "-", "--no-drop", "--report", str(report), *args], stdin=fin, stdout=fout)
        assert sa.wait(timeout=180) == 0, sa.stderr
    checker = FaceChecker(coded_clip)
    codes = []
    for img in decode_all(out):
        code = read_code(img)
        assert code is not None, "a frame without its code"
        (x0, y0, x1, y1), crop = coded_clip.face(code)
        region = img[y0:y1, x0:x1].astype(np.float32)
        # the raw face is replaced: far from its pixels (the methods keep colour/structure, so not solid)
        assert float(np.abs(region - crop.astype(np.float32)).mean()) > 12, code
        # dp-pixelate leaves no face; svd (a rank-k face) and k-same (an average face) keep a
        # face-like shape on purpose: whose it is, is what `streamanon eval` measures
        if args[1] == "dp-pixelate":
            assert not [c for c in checker.hog_faces(img) if x0 - 20 <= c[0] <= x1 + 20 and y0 - 20 <= c[1] <= y1 + 20]
        codes.append(code)
    assert set(codes) == set(range(N_FRAMES))
    anon = json.loads(report.read_text())["summary"]["anonymizer"]
    assert anon["method"] == args[1] and anon["tracks"] >= 1
    if args[1] == "k-same":
        assert anon["fallback"] is None and anon["pool_faces"] >= 5  # the bank is the live pool
    else:
        assert anon["per_track"] and anon["per_track"][0]["frames"] > 0
