"""Probe: would an INT8 CenterFace move the CPU speed targets of issue #3, and what would it miss?

Usage::

    python benchmarks/probe_int8.py                                  # default clips
    python benchmarks/probe_int8.py --calib a.mp4 --clips b.mp4 c.mp4 --frames 60

Not a product path. It builds a static INT8 model with ONNX Runtime's quantizer (QDQ,
per-channel int8 weights, uint8 activations, opset 13; the last convolutions of each head
and the sigmoid stay in float; percentile calibration on ``--calib-frames`` frames of
``--calib``), then on every ``--clips`` clip, at streamanon's native network size with one
non-spinning thread like the product:

* detector milliseconds per frame, float vs INT8, interleaved;
* agreement: share of the float model's faces (threshold 0.2) that the INT8 model also finds
  (IoU >= 0.5), and how many extra boxes it adds.

Calibration frames come from a clip that the evaluation does not use, so that agreement is
measured on unseen content. The model and calibration data stay in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from streamanon.backends.onnxruntime import OrtBackend
from streamanon.config import DetectConfig
from streamanon.detect.centerface import CenterFaceDetector, network_size, prepare_model

CALIB = "videos/intel_asl_gestures/book.mkv"
CLIPS = [
    "videos/face_recognition__short_hamilton_clip.mp4",
    "videos/openpose__video.avi",
    "videos/dlib__MOT20-05-raw_even_shorter.mp4",
    "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4",
]
THRESHOLD = 0.2
HEAD_DEPTH = 4  # nodes kept in float from each output back into its head


def frames_of(path: Path, n: int, stride: int = 1) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % stride == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) >= n:
                break
    return out


def quantize(calib_images: list[np.ndarray], workdir: Path) -> bytes:
    """INT8 QDQ CenterFace calibrated on ``calib_images``."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = version_converter.convert_version(onnx.load_from_string(prepare_model()), 13)
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}_{node.op_type}"
    producer = {o: n for n in model.graph.node for o in n.output}
    keep_float = []
    for out in model.graph.output:
        node = producer.get(out.name)
        for _ in range(HEAD_DEPTH):
            if node is None:
                break
            keep_float.append(node.name)
            node = producer.get(node.input[0])
    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    onnx.save(model, str(src))
    name = model.graph.input[0].name
    h0, w0 = calib_images[0].shape[:2]
    w, h = network_size(w0, h0, None)
    blobs = [cv2.resize(im, (w, h)).transpose(2, 0, 1)[None].astype(np.float32) for im in calib_images]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {name: b}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep_float,
        calibrate_method=CalibrationMethod.Percentile,
    )
    return dst.read_bytes()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)

    def area(r: np.ndarray) -> np.ndarray:
        return (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])

    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def timing_row(
    clip: Path, images: list[np.ndarray], t_fp32: list[float], t_other: list[float], other: str
) -> dict[str, Any]:
    """Clip, network size and median detector ms of fp32 and ``other``."""
    h0, w0 = images[0].shape[:2]
    ms32, ms = statistics.median(t_fp32) * 1000, statistics.median(t_other) * 1000
    return {
        "clip": clip.name,
        "network": "x".join(map(str, network_size(w0, h0, None))),
        "frames": len(images),
        "fp32_ms": round(ms32, 1),
        f"{other}_ms": round(ms, 1),
        "speedup": round(ms32 / ms, 2),
    }


def compare(clip: Path, fp32: CenterFaceDetector, int8: CenterFaceDetector, n: int) -> dict[str, Any]:
    images = frames_of(clip, n)
    for det in (fp32, int8):
        det([images[0]])  # warm-up
    t32, t8 = [], []
    found = matched = extra = 0
    for im in images:
        t = time.perf_counter()
        d32 = fp32([im])[0]
        t32.append(time.perf_counter() - t)
        t = time.perf_counter()
        d8 = int8([im])[0]
        t8.append(time.perf_counter() - t)
        found += len(d32)
        if len(d32) and len(d8):
            iou = iou_matrix(d32.xyxy, d8.xyxy)
            matched += int((iou.max(axis=1) >= 0.5).sum())
            extra += int((iou.max(axis=0) < 0.5).sum())
        else:
            extra += len(d8)
    return {
        **timing_row(clip, images, t32, t8, "int8"),
        "fp32_faces": found,
        "int8_agreement": round(matched / found, 4) if found else None,
        "int8_extra_boxes": extra,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calib", type=Path, default=common.DATA / CALIB)
    p.add_argument("--calib-frames", type=int, default=24)
    p.add_argument("--clips", nargs="*", type=Path, default=[common.DATA / c for c in CLIPS])
    p.add_argument("--frames", type=int, default=60, help="frames per clip")
    p.add_argument("--out", type=Path, default=common.RESULTS / "probe_int8.json")
    args = p.parse_args(argv)
    cfg = DetectConfig(threshold=THRESHOLD, threads=1)
    with tempfile.TemporaryDirectory() as d:
        int8_bytes = quantize(frames_of(args.calib, args.calib_frames, stride=3), Path(d))
    fp32 = CenterFaceDetector(cfg)
    int8 = CenterFaceDetector(cfg, backend=OrtBackend(int8_bytes, ["CPUExecutionProvider"], 1))
    rows = [compare(c, fp32, int8, args.frames) for c in args.clips]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calibration": str(args.calib.name), "rows": rows}, indent=1))
    keys = ("clip", "network", "fp32_ms", "int8_ms", "speedup", "fp32_faces", "int8_agreement", "int8_extra_boxes")
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
