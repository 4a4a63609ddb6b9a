"""``streamanon eval generator``: does the generator reproduce people it was trained on?

A generator that paints a training person's face into someone else's footage leaks that
person: a privacy bug, not a quality issue. The check runs the exported generator on the
faces of people who were *not* in the training data (``--others``), embeds every
generated face and every training face with dlib's recogniser (``models.recognizer``,
distance < 0.6 = same person) and reports:

* ``generated_match_rate``: generated faces within 0.6 of any training face;
* ``real_match_rate``: the same for the real faces of the other people, i.e. how often
  dlib confuses a stranger with someone of the training set anyway (the baseline);
* ``own_match_rate``: generated faces within 0.6 of the person whose context they were
  painted into (what the conditioning leaks: hair, ears, face shape; issue 12's target);
* ``latent_same_rate`` (with ``--samples`` >= 2): pairs of faces generated for the same
  input with different latents that dlib calls the same person. Different tracks get
  different latents, so this is the rate at which two tracks with the same context would
  get the same synthetic person (the lower the better); ``latent_distance_median`` beside it.

A generated rate clearly above the real one means the generator has memorised training
identities. All faces are embedded on the same chips with the same landmarks (the
original's), so the measure compares like with like.
"""

from __future__ import annotations

import json
import logging
import logging as _logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..anonymize.generator_chip import DLIB5_FROM_68
from ..cliutil import ArgParser, setup_logging
from ..errors import ConfigError
from ..models.generator import GeneratorRunner
from ..models.recognizer import DlibRecogniser, Face, distance
from .data import ChipSet, ChipSettings, build_cache, scan_sources

log = logging.getLogger(__name__)

#: A generated match rate this much above the real baseline is reported as memorisation.
TOLERANCE = 0.05


def embed_chips(rec: Any, chips: NDArray[np.uint8], landmarks: NDArray[np.float32]) -> NDArray[np.float32]:
    """dlib descriptors of chips, aligned by their own (original) 68 points' dlib-5 subset."""
    out = np.zeros((len(chips), 128), np.float32)
    for i, (chip, lm) in enumerate(zip(chips, landmarks, strict=True)):
        x0, y0 = lm.min(0)
        x1, y1 = lm.max(0)
        face = Face(np.array([x0, y0, x1, y1], np.float32), np.ascontiguousarray(lm[list(DLIB5_FROM_68)], np.float32))
        out[i] = rec.embed(np.ascontiguousarray(chip), [face])[0]
    return out


def nearest(
    a: NDArray[np.float32], b: NDArray[np.float32], chunk: int = 512
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """For each row of ``a``, the distance to and index of its nearest row of ``b``."""
    dist = np.zeros(len(a), np.float32)
    idx = np.zeros(len(a), np.int64)
    for i in range(0, len(a), chunk):
        d = distance(a[i : i + chunk], b)
        idx[i : i + chunk] = d.argmin(1)
        dist[i : i + chunk] = d.min(1)
    return dist, idx


def generate_for(runner: Any, others: ChipSet, samples: int, seed: int) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """``samples`` generated faces per face of ``others`` (fresh latents), and their source rows."""
    rng = np.random.default_rng(seed)
    outs, rows = [], []
    for _ in range(samples):
        for i in range(0, len(others), 16):
            sl = slice(i, i + 16)
            n = len(others.chips[sl])
            outs.append(runner(others.chips[sl], others.masks[sl], others.landmarks[sl], runner.latents(n, rng)))
            rows.append(np.arange(i, i + n))
    return np.concatenate(outs), np.concatenate(rows)


def latent_diversity(gen_emb: NDArray[np.float32], gen_rows: NDArray[np.int64], threshold: float) -> dict[str, Any]:
    """dlib distances between the faces generated for the same input with different latents."""
    dists: list[float] = []
    for r in np.unique(gen_rows):
        e = gen_emb[gen_rows == r]
        for i in range(len(e)):
            for j in range(i + 1, len(e)):
                dists.append(float(np.sqrt(((e[i] - e[j]) ** 2).sum())))
    if not dists:
        return {"latent_pairs": 0, "latent_same_rate": None, "latent_distance_median": None}
    d = np.array(dists)
    return {
        "latent_pairs": len(d),
        "latent_same_rate": float((d < threshold).mean()),
        "latent_distance_median": float(np.median(d)),
        "latent_distance_mean": float(d.mean()),
    }


def memorisation_report(
    train_emb: NDArray[np.float32],
    train_labels: list[str],
    real_emb: NDArray[np.float32],
    gen_emb: NDArray[np.float32],
    gen_rows: NDArray[np.int64],
    threshold: float,
) -> dict[str, Any]:
    """The rates of the module doc from embeddings (pure numpy: tested on its own)."""
    if not len(train_emb) or not len(real_emb) or not len(gen_emb):
        raise ConfigError("memorisation check needs training faces, other people's faces and generated faces")
    d_real, _ = nearest(real_emb, train_emb)
    d_gen, i_gen = nearest(gen_emb, train_emb)
    own = np.sqrt(((gen_emb - real_emb[gen_rows]) ** 2).sum(1))
    real_rate = float((d_real < threshold).mean())
    gen_rate = float((d_gen < threshold).mean())
    matched = Counter(train_labels[j] for j, d in zip(i_gen, d_gen, strict=True) if d < threshold)
    return {
        "threshold": threshold,
        "training_faces": len(train_emb),
        "other_faces": len(real_emb),
        "generated_faces": len(gen_emb),
        "real_match_rate": real_rate,
        "generated_match_rate": gen_rate,
        "own_match_rate": float((own < threshold).mean()),
        "real_nearest_median": float(np.median(d_real)),
        "generated_nearest_median": float(np.median(d_gen)),
        "own_distance_median": float(np.median(own)),
        "matched_training_labels": dict(matched.most_common(10)),
        "memorisation": gen_rate > real_rate + TOLERANCE,
    } | latent_diversity(gen_emb, gen_rows, threshold)


def eval_parser() -> Any:
    p = ArgParser(
        prog="streamanon eval generator",
        description="Memorisation check: generated faces vs the training identities, next to real faces of others.",
    )
    p.add_argument(
        "--generator",
        type=Path,
        default=None,
        metavar="MODEL.onnx",
        help="exported generator (default: the shipped one)",
    )
    p.add_argument(
        "--train", type=Path, nargs="+", required=True, metavar="DATA", help="the data the generator was trained on"
    )
    p.add_argument(
        "--others", type=Path, nargs="+", required=True, metavar="DATA", help="faces of people not in the training data"
    )
    p.add_argument(
        "--cache", type=Path, required=True, metavar="DIR", help="chip cache (as for 'train generator'; raw faces)"
    )
    p.add_argument("--samples", type=int, default=3, help="generated faces per other face (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--video-step", type=int, default=4, help="as for 'train generator' (default 4)")
    p.add_argument("--max-per-video", type=int, default=150, help="as for 'train generator' (default 150)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p


def eval_generator_main(argv: list[str]) -> int:
    """Entry point of ``streamanon eval generator``."""
    ns = eval_parser().parse_args(argv)
    setup_logging(False)
    if ns.verbose:
        _logging.getLogger("streamanon").setLevel(_logging.INFO)
    if ns.samples < 1:
        raise ConfigError("--samples must be >= 1")
    runner = GeneratorRunner(ns.generator)
    settings = ChipSettings(size=runner.size, video_step=ns.video_step, max_per_video=ns.max_per_video)
    train = build_cache(scan_sources(ns.train), ns.cache, settings)
    others = build_cache(scan_sources(ns.others), ns.cache, settings)
    train_paths = {p for p, _ in train.sources}
    overlap = [p for p, _ in others.sources if p in train_paths]
    if overlap:
        raise ConfigError(
            f"--others shares {len(overlap)} files with --train (e.g. {overlap[0]}): they must be other people"
        )
    rec = DlibRecogniser()
    log.info("embedding %d training faces, %d other faces", len(train), len(others))
    train_emb = embed_chips(rec, train.chips, train.landmarks)
    real_emb = embed_chips(rec, others.chips, others.landmarks)
    gen, rows = generate_for(runner, others, ns.samples, ns.seed)
    gen_emb = embed_chips(rec, gen, others.landmarks[rows])
    res = memorisation_report(train_emb, train.labels, real_emb, gen_emb, rows, rec.threshold)
    res |= {"generator": str(runner.path), "size": runner.size, "backend": str(runner.choice)}
    r = res
    print(f"generator {runner.path} ({runner.size} px); dlib threshold {rec.threshold}")
    print(f"training faces {r['training_faces']}, other people's {r['other_faces']}, generated {r['generated_faces']}")
    print(
        f"match any training identity: generated {r['generated_match_rate']:.3f}"
        f"  vs  real other people {r['real_match_rate']:.3f}"
    )
    print(
        f"median nearest training distance: generated {r['generated_nearest_median']:.3f}"
        f"  vs  real {r['real_nearest_median']:.3f}"
    )
    print(
        f"generated face matches the person it replaced: {r['own_match_rate']:.3f}"
        f" (median distance {r['own_distance_median']:.3f})"
    )
    if r["latent_pairs"]:
        print(
            f"two latents, same input, same person: {r['latent_same_rate']:.3f} of {r['latent_pairs']} pairs"
            f" (median distance {r['latent_distance_median']:.3f})"
        )
    verdict = "MEMORISATION: generated faces match training identities more often than strangers do"
    print("verdict: " + (verdict if r["memorisation"] else "no sign of memorisation"))
    if ns.json:
        ns.json.parent.mkdir(parents=True, exist_ok=True)
        ns.json.write_text(json.dumps(res, indent=1))
    return 0
