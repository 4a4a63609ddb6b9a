"""Output keeps size, frame count, timestamps, rotation and audio; pixels away from faces
are unchanged (PSNR >= 35 dB outside the masks)."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from mediautil import DATA, audio_packets, decode, iter_frames, psnr, sha256

from streamanon.anonymize.mask import union_mask
from streamanon.config import PipelineConfig
from streamanon.io.source import rotation_turns
from streamanon.runner import default_output, process_file
from streamanon.types import Detections

CFG = PipelineConfig()


def check_same_media(src: Path, out: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    a, ta, ia = decode(src)
    b, tb, ib = decode(out)
    assert (ib["width"], ib["height"]) == (ia["width"], ia["height"])
    assert len(b) == len(a)
    assert ib.get("rotation", 0) == ia.get("rotation", 0)
    np.testing.assert_allclose(tb, ta, atol=1e-3)
    assert audio_packets(out) == audio_packets(src)
    return a, b


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"width": 321, "height": 243}, id="odd-size"),
        pytest.param(
            {"pts": [0, 1, 3, 4, 9, 10, 11, 20, 21, 22, 40, 41], "frames": 12, "time_base": Fraction(1, 30)}, id="vfr"
        ),
        pytest.param({"audio": True}, id="audio"),
        pytest.param({"audio": False}, id="no-audio"),
        pytest.param({"rotation": 90, "width": 320, "height": 180}, id="rotated-90"),
        pytest.param({"rotation": -90, "width": 320, "height": 180}, id="rotated-270"),
    ],
)
def test_synthetic_roundtrip(tmp_path: Path, clip_factory, kw: dict) -> None:
    src = clip_factory("in.mp4", **kw)
    before = sha256(src)
    out = tmp_path / "out.mp4"
    rep = process_file(src, out, CFG)
    a, b = check_same_media(src, out)
    assert rep.frames == len(a)
    # No faces in a gradient: the whole picture must survive encoding.
    assert min(psnr(x, y) for x, y in zip(a, b, strict=True)) >= 35
    assert sha256(src) == before


def test_default_output_name(tmp_path: Path, clip_factory) -> None:
    src = clip_factory("talk.mkv")
    assert default_output(src) == tmp_path / "talk_anonymized.mkv"


def test_metadata_stripped_unless_kept(tmp_path: Path, clip_factory) -> None:
    import av

    src = tmp_path / "meta.mp4"
    raw = clip_factory("raw.mp4", audio=True)
    with av.open(str(raw)) as inp, av.open(str(src), "w") as out:
        out.metadata.update(
            {"title": "Alice at home", "location": "+48.8577+002.2950/", "creation_time": "2024-05-01T10:00:00Z"}
        )
        vmap = {}
        for s in inp.streams:
            o = out.add_stream_from_template(s)
            o.metadata["handler_name"] = "SerialNo 12345"
            vmap[s.index] = o
        for p in inp.demux():
            if p.dts is None:
                continue
            p.stream = vmap[p.stream.index]
            out.mux(p)
    stripped, kept = tmp_path / "s.mp4", tmp_path / "k.mp4"
    process_file(src, stripped, CFG)
    process_file(src, kept, PipelineConfig.from_dict({"io": {"keep_metadata": True}}))
    with av.open(str(stripped)) as c:
        text = json.dumps([dict(c.metadata)] + [dict(s.metadata) for s in c.streams])
        assert "Alice" not in text and "48.8577" not in text and "2024-05-01" not in text and "12345" not in text
    with av.open(str(kept)) as c:
        assert c.metadata.get("title") == "Alice at home"


def report_masks(report: dict, width: int, height: int, turns: int) -> list[np.ndarray]:
    masks = []
    w, h = (height, width) if turns % 2 else (width, height)
    for rec in report["frames"]:
        faces = rec["faces"]
        if rec.get("failed"):
            masks.append(np.ones((height, width), bool))
            continue
        dets = Detections(
            np.array([f["box"] for f in faces], np.float32).reshape(-1, 4),
            landmarks=np.array(
                [f["landmarks"] if f["landmarks"] else np.full((5, 2), np.nan) for f in faces], np.float32
            ).reshape(-1, 5, 2),
        )
        m = union_mask(dets, w, h, CFG.anonymize.shape, CFG.anonymize.mask_scale, CFG.anonymize.mask_margin)
        masks.append(np.rot90(m, -turns) if turns else m)
    return masks


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


def _real_clips() -> list[str]:
    """Every clip in the shared data (the issue asks for all of them)."""
    exts = {".mp4", ".mkv", ".avi", ".gif", ".webm", ".mov"}
    found = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.suffix.lower() in exts and p.is_file())
    return found or ["videos/face_recognition__short_hamilton_clip.mp4"]  # skips without data


REAL = _real_clips()


PSNR_EVERY = 3


@pytest.mark.slow
@pytest.mark.parametrize("rel", REAL)
def test_real_clip(tmp_path: Path, data_dir: Path, rel: str) -> None:
    src = data_dir / rel
    before = sha256(src)
    out = tmp_path / f"out{src.suffix}"
    rep = process_file(src, out, CFG)
    report = json.loads(rep.to_json(CFG))
    assert sha256(src) == before
    assert report["summary"]["frames_failed"] == 0
    _, _, ia = decode(src, limit=1)
    _, _, ib = decode(out, limit=1)
    assert (ib["width"], ib["height"], ib.get("rotation", 0)) == (ia["width"], ia["height"], ia.get("rotation", 0))
    assert audio_packets(out) == audio_packets(src)
    turns = rotation_turns(ia.get("rotation", 0))
    sq, n, worst, count = 0.0, 0, float("inf"), 0
    pairs = itertools.zip_longest(iter_frames(src), iter_frames(out), report["frames"])
    offset = None
    for (x, tx), (y, ty), rec in pairs:
        count += 1
        if offset is None:
            # AVI stores no presentation times; FFmpeg's reader reports H.264-in-AVI one
            # frame late. Within the file every interval must still match exactly.
            offset = ty - tx if out.suffix == ".avi" else 0.0
        assert abs(tx + offset - ty) < 1e-3, (count, tx, ty)
        if count % PSNR_EVERY and count > 1:
            continue  # timestamps and count are checked on every frame, pixels on a sample
        mask = report_masks({"frames": [rec]}, x.shape[1], x.shape[0], turns)[0]
        # Outside the masks (grown by 8 px for codec bleeding at the mask edge) the picture is unchanged.
        outside = ~dilate(mask, 8)
        if outside.any():
            d = ((x.astype(np.float64) - y) ** 2)[outside]
            sq, n = sq + float(d.sum()), n + d.size
            worst = min(worst, psnr(x, y, outside))
    assert count == report["summary"]["frames"]
    assert report["summary"]["frames_lost"] == 0
    clip_psnr = 10 * np.log10(255.0**2 / (sq / n)) if sq else float("inf")
    assert clip_psnr >= 35, (clip_psnr, worst)
    assert worst >= 30, worst
