"""The torch port of dlib's face recogniser against dlib itself, and its speed.

On every image of the shared identity folders (``dlib_johns``, ``face-api.js_bbt``,
``face_recognition_knn_examples/train``), dlib's HOG detector and 5-point model find the
largest face; then:

* chips: dlib's ``extract_image_chips`` vs ``streamanon.models.dlib_torch`` (numpy, and
  the differentiable torch version): differing pixels and the largest difference;
* network: ``compute_face_descriptor`` on dlib's chip vs the port on the same chip;
* end to end: ``compute_face_descriptor(image, shape)`` vs the port on its own chips;
* decisions: every pair's same/different call at distance 0.6, port vs dlib;
* speed (process CPU ms): per chip at batch 1 and 16 (torch threads 1 unless
  ``--threads``), dlib's per chip for reference, PGD with 1 and 3 steps per face;
* PGD: untargeted at epsilon 2/4/8 (default steps, with and without EOT) on one chip
  per identity, scored on the uint8 result and after a real JPEG round trip (q 75).

    python benchmarks/bench_dlib_torch.py [--data DIR] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_DATA = Path(os.environ.get("STREAMANON_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
FOLDERS = ("dlib_johns", "face-api.js_bbt", "face_recognition_knn_examples/train")


def _timeit(fn: Any, repeat: int) -> float:
    """Seconds per call in process CPU time: on a shared machine wall time measures the
    neighbours; with one torch thread CPU time is what the call costs (dlib's own
    threads, if any, are included in its figure)."""
    fn()  # warm-up
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import dlib
    import torch

    from streamanon.anonymize.adversarial_core import EOTConfig, PGDConfig, Untargeted, pgd
    from streamanon.models.dlib_torch import DlibTorchEmbedder, extract_image_chips_torch, face_chip_details
    from streamanon.models.recognizer import DlibRecogniser, distance

    torch.set_num_threads(args.threads)
    rec = DlibRecogniser()
    port = DlibTorchEmbedder()
    files = [p for f in FOLDERS for p in sorted((args.data / "identities" / f).glob("*/*")) if p.is_file()]
    if not files:
        print(f"no identity images under {args.data}/identities", file=sys.stderr)
        return 2
    labels: list[str] = []
    dlib_chips, my_chips, ref_e2e, torch_px = [], [], [], []
    no_face = 0
    for path in files:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        img = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        faces = rec.detect(img)
        if not faces:
            no_face += 1
            continue
        face = faces[0]
        shape = rec._shape_of(face)
        dlib_chips.append(np.array(dlib.extract_image_chips(img, [dlib.get_face_chip_details(shape, 150, 0.25)])[0]))
        mine = port.chips(img, [face])[0]
        my_chips.append(mine)
        ref_e2e.append(rec.embed(img, [face])[0])
        t = extract_image_chips_torch(
            torch.from_numpy(img.transpose(2, 0, 1).copy()).float(), [face_chip_details(face)]
        )
        torch_px.append(int(np.abs(t[0].numpy().transpose(1, 2, 0) - mine).max()))
        labels.append(f"{path.parent.parent.name}/{path.parent.name}")
    dc, mc = np.stack(dlib_chips), np.stack(my_chips)
    px = np.abs(dc.astype(np.int16) - mc.astype(np.int16))
    dlib_on_chip = np.array([np.array(rec._net.compute_face_descriptor(c), np.float32) for c in dc])
    port_on_dlib_chip = port.embed_chips(dc)
    port_e2e = port.embed_chips(mc)
    ref = np.stack(ref_e2e)

    def decisions(e: np.ndarray) -> np.ndarray:
        d = distance(e, e)
        iu = np.triu_indices(len(e), 1)
        return np.asarray(d[iu] < 0.6)

    dec_ref, dec_net, dec_e2e = decisions(dlib_on_chip), decisions(port_on_dlib_chip), decisions(port_e2e)
    same = np.array([labels[i] == labels[j] for i, j in combinations(range(len(labels)), 2)])
    x1 = torch.from_numpy(mc[:1].transpose(0, 3, 1, 2).copy()).float()
    x16 = torch.from_numpy(np.resize(mc, (16, *mc.shape[1:])).transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        t1 = _timeit(lambda: port.net(x1), 10)
        t16 = _timeit(lambda: port.net(x16), 3) / 16
    t_dlib = _timeit(lambda: rec._net.compute_face_descriptor(dc[0]), 10)
    x3 = x16[:3]
    with torch.no_grad():
        r3 = port.net(x3)
    pgd_ms = {}
    for steps in (1, 3):
        cfg = PGDConfig(epsilon=4, steps=steps)
        pgd_ms[steps] = _timeit(lambda cfg=cfg: pgd(x3, port.net, Untargeted(r3), cfg), 2) / 3 * 1e3
    # PGD on one chip per identity: untargeted, default steps, with and without EOT,
    # scored on the uint8 result and after a real JPEG round trip (OpenCV, quality 75).
    first = sorted({lab: i for i, lab in reversed(list(enumerate(labels)))}.values())
    xs = torch.from_numpy(mc[first].transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        rs = port.net(xs)

    def jpeg(batch: torch.Tensor, quality: int) -> torch.Tensor:
        out = []
        for im in batch.numpy().transpose(0, 2, 3, 1).astype(np.uint8):
            _, buf = cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy()).float()

    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(10 * torch.log10(255.0**2 / ((a - b) ** 2).mean()))

    sweep = []
    for eps in (2.0, 4.0, 8.0):
        for eot in (None, EOTConfig()):
            t0 = time.process_time()
            r = pgd(xs, port.net, Untargeted(rs), PGDConfig(epsilon=eps, eot=eot))
            secs = time.process_time() - t0
            with torch.no_grad():
                d_clean = ((port.net(r.adversarial) - rs) ** 2).sum(1).sqrt()
                d_jpeg = ((port.net(jpeg(r.adversarial, 75)) - rs) ** 2).sum(1).sqrt()
                d_orig_jpeg = ((port.net(jpeg(xs, 75)) - rs) ** 2).sum(1).sqrt()
            sweep.append(
                {
                    "epsilon": eps,
                    "eot": eot is not None,
                    "chips": len(first),
                    "beyond_0.6": float((d_clean > 0.6).float().mean()),
                    "beyond_0.6_after_jpeg75": float((d_jpeg > 0.6).float().mean()),
                    "median_distance": float(d_clean.median()),
                    "median_distance_after_jpeg75": float(d_jpeg.median()),
                    "clean_jpeg75_median_distance": float(d_orig_jpeg.median()),
                    "chip_psnr_db": psnr(r.adversarial, xs),
                    "ms_per_face": secs / len(first) * 1e3,
                }
            )
    out = {
        "images": len(files),
        "faces": len(labels),
        "no_face": no_face,
        "identities": len(set(labels)),
        "pairs": len(dec_ref),
        "same_pairs": int(same.sum()),
        "chip_pixels_differing": int((px > 0).sum()),
        "chip_pixels_total": int(px.size),
        "chip_max_abs_diff": int(px.max()),
        "torch_chip_max_abs_diff_vs_numpy": max(torch_px),
        "net_max_abs_diff": float(np.abs(port_on_dlib_chip - dlib_on_chip).max()),
        "e2e_max_abs_diff": float(np.abs(port_e2e - ref).max()),
        "decision_disagreements_net": int((dec_ref != dec_net).sum()),
        "decision_disagreements_e2e": int((decisions(ref) != dec_e2e).sum()),
        "dlib_same_person_accuracy": float((dec_ref == same).mean()),
        "ms_per_chip_batch1": t1 * 1e3,
        "ms_per_chip_batch16": t16 * 1e3,
        "dlib_ms_per_chip": t_dlib * 1e3,
        "pgd_ms_per_face_3faces": pgd_ms,
        "pgd_untargeted_default_steps": sweep,
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "dlib": dlib.__version__,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
