"""``streamanon eval identity|attack|adversary|video``: is an identity still recognisable?

The command functions (``eval/cli.py`` holds their parsers and the dispatch): identity
photos scored by dlib (and FaceRes) after each method, a learned inversion attack on
them, recognisers trained on each method's output, and faces left in an anonymised video.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StreamanonError
from ..models.faceres import FaceResRecogniser
from . import report
from .adversary import (
    AdversaryOptions,
    DlibSplit,
    IdentitySet,
    evaluate_set,
    headline,
    options_dict,
    split_identities,
    subsample,
)
from .attack import import_torch, run_attack
from .commands_common import _check_outputs, _eval_config, _print_table, _recogniser, _write_json
from .data import load_identities
from .identity import View, build_references, evaluate_identity, face_crop
from .product import ProductRunner, parse_methods

log = logging.getLogger(__name__)


ID_COLUMNS = (
    "method",
    "faces",
    "verification_leakage",
    "missed",
    "rank1",
    "chance",
    "detection_survival",
    "psnr",
    "ssim",
    "ms_ssim",
    "psnr_outside",
    "ssim_outside",
    "ms_ssim_outside",
    "psnr_face",
    "ssim_face",
)


def identity_command(ns: argparse.Namespace) -> int:
    """``eval identity``: score each method on identity photos; fail if the control does not leak."""
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    product = ProductRunner(config, pad=ns.pad)
    _check_outputs(ns)
    _crfs(ns.encode_crf)  # option errors before the (slow) references
    _also(ns.also)
    rec, refs, info = _references(ns)
    keep: list[int] = []
    if ns.html and ns.examples > 0:
        rng = np.random.default_rng(ns.seed)
        keep = sorted(rng.choice(len(refs), size=min(ns.examples, len(refs)), replace=False).tolist())
    views = _views(ns, rec, refs, config.io.preset)
    result, raw = evaluate_identity(
        refs, product, rec, specs, keep_rows=keep, progress=lambda k: log.info("method %s", k), views=views
    )
    result.update(
        dataset=info,
        settings={
            "config": config.to_dict(),
            "pad": ns.pad,
            "recogniser": rec.name,
            "dlib_detector": ns.dlib_detector,
            "threshold": rec.threshold,
            "seed": ns.seed,
            "also": _also(ns.also),
            "encode_crf": _crfs(ns.encode_crf),
        },
    )
    _write_json(ns.json, result)
    rows = [{"method": k, **v} for k, v in result["methods"].items()]
    print(f"{info['faces']} faces, {info['identities']} identities; distance threshold {rec.threshold}")
    _print_table(ID_COLUMNS, ([r.get(c) for c in ID_COLUMNS] for r in rows))
    if ns.html:
        grid: list[list[tuple[str, Any]]] = [
            [("original", face_crop(refs[i].image, refs[i].face.box, 128))]
            + [(k, raw[k].faces[i].crop) for k in raw if raw[k].faces[i].crop is not None]
            for i in keep
        ]
        report.write_html(
            ns.html,
            "streamanon eval identity",
            [
                ("Results", table_html_note(rows, info)),
                ("Leakage vs quality", report.plot_leakage_vs_quality(result["methods"])),
                ("Examples (original / each method)", report.image_grid(grid)),
            ],
        )
    control = result.get("control")
    if control is not None and not control["ok"]:
        raise StreamanonError(
            f"the control 'none' leaked only {control['verification_leakage']:.0%} of faces (expected >= "
            f"{control['min']:.0%}): the evaluation harness is broken, its numbers cannot be trusted"
        )
    return 0


def table_html_note(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The identity results table with a note on how to read it."""
    return report.table_html(rows, ID_COLUMNS) + (
        f'<p class="note">{info["faces"]} faces of {info["identities"]} identities. Leakage: share of faces whose '
        "anonymised embedding (taken at the original's dlib landmarks) is within 0.6 of the original, or that the "
        "product missed. Rank-1: anonymised probe vs the other originals; chance = random guess.</p>"
    )


def _references(ns: argparse.Namespace) -> tuple[Any, list[Any], dict[str, Any]]:
    """Check the folders, then load dlib and find each photo's reference face."""
    images = load_identities(ns.faces)  # folder errors first: they need no models
    rec = _recogniser(ns)
    refs, skipped = build_references(images, rec)
    if not refs:
        raise ConfigError(
            f"dlib found no face in any of the {len(images)} images under {', '.join(map(str, ns.faces))}"
        )
    ids = sorted({r.identity for r in refs})
    info = {
        "folders": [str(f) for f in ns.faces],
        "images": len(images),
        "faces": len(refs),
        "identities": len(ids),
        "no_face_found": skipped,
    }
    log.info("%d faces of %d identities (%d photos without a dlib face)", len(refs), len(ids), len(skipped))
    return rec, refs, info


ALSO_RECOGNISERS = ("faceres",)


def _crfs(text: str) -> list[int]:
    out = []
    for t in (t.strip() for t in text.split(",")):
        if not t:
            continue
        if not t.isdigit() or not 0 <= int(t) <= 51:
            raise ConfigError(f"invalid --encode-crf value {t!r}: expected integers in [0, 51], comma separated")
        out.append(int(t))
    return out


def _also(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "dlib"]
    for name in names:
        if name not in ALSO_RECOGNISERS:
            raise ConfigError(f"unknown recogniser {name!r} in --also; choose from: {', '.join(ALSO_RECOGNISERS)}")
    return names


def _views(ns: argparse.Namespace, rec: Any, refs: list[Any], preset: str) -> list[Any]:
    """The extra scorings of ``eval identity``: each recogniser (dlib, then ``--also``) on
    the outputs as they are and after H.264 at each ``--encode-crf``; dlib as-is is the main one."""
    crfs = _crfs(ns.encode_crf)
    recs = [(rec, np.stack([r.embedding for r in refs]))]
    for name in _also(ns.also):
        assert name == "faceres"  # the only one of ALSO_RECOGNISERS
        other = FaceResRecogniser(locator=rec)
        recs.append((other, np.stack([other.embed(r.image, [r.face])[0] for r in refs])))
    views = []
    for r, emb in recs:
        for crf in [None, *crfs]:
            if r is rec and crf is None:
                continue
            views.append(View(r, emb, crf, preset))
    return views


def attack_command(ns: argparse.Namespace) -> int:
    """``eval attack``: train the inverse on some identities, score it on the held-out ones."""
    import_torch()  # fail fast with the install hint
    config = _eval_config(ns)
    specs = parse_methods(ns.method, config.anonymize)
    if ns.epochs < 1:
        raise ConfigError(f"invalid --epochs {ns.epochs}: expected an integer >= 1")
    if not 0.0 < ns.holdout < 1.0:
        raise ConfigError(f"invalid --holdout {ns.holdout}: expected a fraction in (0, 1)")
    product = ProductRunner(config, pad=ns.pad)
    _check_outputs(ns)
    _also(ns.also)
    rec, refs, info = _references(ns)
    also = [FaceResRecogniser(locator=rec) for _ in _also(ns.also)]  # faceres: the only one
    attacks: dict[str, Any] = {}
    grid: list[list[tuple[str, Any]]] = []
    for spec in specs:
        log.info("attacking %s", spec.key)
        summary, examples = run_attack(
            refs,
            product,
            rec,
            spec,
            epochs=ns.epochs,
            seed=ns.seed,
            holdout=ns.holdout,
            threads=ns.torch_threads,
            also=also,
        )
        attacks[spec.key] = summary
        grid += [
            [("original", e["original"]), (spec.key, e["anonymised"]), (f"{spec.key} attacked", e["attacked"])]
            for e in examples[:4]
        ]
    out = {
        "attacks": attacks,
        "dataset": info,
        "settings": {"config": config.to_dict(), "epochs": ns.epochs, "seed": ns.seed, "holdout": ns.holdout},
    }
    _write_json(ns.json, out)
    cols = [
        "method",
        "heldout_faces",
        "leakage_before",
        "leakage_after",
        "rank1_before",
        "rank1_after",
        "chance",
        "input_psnr",
        "attack_psnr",
        "input_ssim",
        "attack_ssim",
    ]
    rows = [_attack_row(k, s) for k, s in attacks.items()]
    rows += [_attack_row(f"{k} ({n})", {**s, **v}) for k, s in attacks.items() for n, v in s.get("also", {}).items()]
    _print_table(cols, ([r[c] for c in cols] for r in rows))
    if ns.html:
        report.write_html(
            ns.html,
            "streamanon eval attack",
            [
                ("Results (held-out identities)", report.table_html(rows, cols)),
                ("Leakage after the attack", report.plot_attack(attacks)),
                ("Examples (original / anonymised / attacked)", report.image_grid(grid)),
            ],
        )
    return 0


def _attack_row(method: str, s: dict[str, Any]) -> dict[str, Any]:
    """One method's line of the attack table, from its ``run_attack`` summary."""
    rc = s["reconstruction"]
    return {
        "method": method,
        "heldout_faces": s["split"]["heldout_faces"],
        "leakage_before": s["before"]["verification_leakage"],
        "leakage_after": s["after"]["verification_leakage"],
        "rank1_before": s["before"]["rank1"],
        "rank1_after": s["after"]["rank1"],
        "chance": s["after"]["chance"],
        **{c: rc[c] for c in ("input_psnr", "attack_psnr", "input_ssim", "attack_ssim")},
    }


def adversary_command(ns: argparse.Namespace) -> int:
    """``eval adversary``: off-the-shelf and method-aware recognisers on each identity set."""
    if ns.html:
        raise ConfigError("--html: eval adversary writes no HTML report (its numbers go to --json and the terminal)")
    torch = import_torch()
    torch.set_num_threads(max(1, ns.torch_threads))
    opts = AdversaryOptions(ns.epochs, ns.blocks, ns.holdout, seed=ns.seed)
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    recs = [r.strip() for r in ns.recognisers.split(",") if r.strip()]
    if not recs or set(recs) - {"dlib", "faceres"} or "dlib" not in recs:
        raise ConfigError(f"invalid --recognisers {ns.recognisers!r}: dlib, or dlib,faceres")
    _check_outputs(ns)
    sets_dirs = [[Path(d) for d in entry.split(",") if d] for entry in ns.faces]
    images = [load_identities(dirs) for dirs in sets_dirs]  # folder errors before any model loads
    product = ProductRunner(config, pad=ns.pad)
    rec = _recogniser(ns)
    faceres = None
    if "faceres" in recs:
        faceres = FaceResRecogniser(locator=rec)
    split = DlibSplit(opts.blocks)
    per_set: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    for dirs, imgs in zip(sets_dirs, images, strict=True):
        name = "+".join(d.name for d in dirs)
        # draw before dlib looks for faces (a large set costs a detection per photo)
        imgs = subsample(imgs, ns.max_identities, ns.max_photos, ns.seed)
        refs, skipped = build_references(imgs, rec)
        iset = IdentitySet(name, refs)
        iset.train, iset.test = split_identities(iset.identities, opts.holdout, opts.seed)
        datasets[name] = {"folders": [str(d) for d in dirs], **_split_stats(iset), "no_face_found": len(skipped)}
        log.info("%s: %s", name, datasets[name])
        per_set[name] = evaluate_set(
            iset, product, specs, split, opts, faceres, progress=lambda k: log.info("method %s", k)
        )
    result = {
        "methods": headline(per_set),
        "sets": per_set,
        "datasets": datasets,
        "settings": {"config": config.to_dict(), "adversary": options_dict(opts), "recognisers": recs},
    }
    _write_json(ns.json, result)
    _print_adversary(per_set, result["methods"])
    return 0


def _print_adversary(per_set: dict[str, Any], methods: dict[str, Any]) -> None:
    """The scores per set and recogniser, then each method's worst case (``headline``)."""
    scores = ("rank1", "chance", "linkage_auc", "tar_at_1fmr")
    _print_table(
        ["method", "set", "recogniser", *scores],
        (
            [key, set_name, r_name, *(sc[c] for c in scores)]
            for set_name, res in per_set.items()
            for key, m in res.items()
            for r_name, sc in m["by_recogniser"].items()
        ),
    )
    print()
    _print_table(
        ["method", "worst rank1", "chance", "of", "worst linkage_auc", "holds"],
        ([key, m["rank1"], m["chance"], m["worst_of"], m["linkage_auc"], m["holds"]] for key, m in methods.items()),
    )


def _split_stats(iset: IdentitySet) -> dict[str, int]:
    """Faces and identities of an identity set, and of its train and test splits."""
    return {
        "faces": len(iset.refs),
        "identities": len(set(iset.identities)),
        "train_faces": len(iset.train),
        "test_faces": len(iset.test),
        "train_identities": len({iset.identities[i] for i in iset.train}),
        "test_identities": len({iset.identities[i] for i in iset.test}),
    }


def video_command(ns: argparse.Namespace) -> int:
    """``eval video``: recognisable faces left in an anonymised video."""
    from .video import evaluate_video

    if ns.every < 1:
        raise ConfigError(f"invalid --every {ns.every}: expected an integer >= 1")
    _check_outputs(ns)
    rec = _recogniser(ns)
    res = evaluate_video(ns.original, ns.anonymised, rec, every=ns.every, save_leaks=ns.save_leaks)
    _write_json(ns.json, res)
    lr = res["longest_run"]
    print(f"compared {res['frames_compared']} frames (every {ns.every}), {res['faces_checked']} faces found by dlib")
    print(f"leaked: {res['leaked_faces']} faces in {res['leaked_frames']} frames (distance < {res['threshold']})")
    if res["leak_times"]:
        print("leak times (s): " + ", ".join(report.fmt_text(t) for t in res["leak_times"][:50]))
    if lr:
        span = f"frames {lr['first_frame']}-{lr['last_frame']}"
        print(f"longest run: {span} ({lr['samples']} samples, ~{report.fmt_text(lr['seconds'])} s)")
    if ns.html:
        cols = ["frame", "time", "distance", "box", "score"]
        report.write_html(
            ns.html,
            "streamanon eval video",
            [
                (
                    "Summary",
                    report.table_html(
                        [{k: v for k, v in res.items() if k not in ("leaks", "leak_times", "longest_run")}],
                        ["frames_compared", "faces_checked", "leaked_faces", "leaked_frames", "leak_rate"],
                    ),
                ),
                ("Leaks", report.table_html(res["leaks"], cols)),
            ],
        )
    return 0
