"""``streamanon eval identity|attack|adversary|detect|video|temporal|natural``: measure privacy and quality.

Results print as a table on stdout; ``--json PATH`` writes them machine-readable and
``--html PATH`` an offline report with plots (face images appear only in that report).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import add_pipeline_options, given_options
from ..cliutil import ArgParser, setup_logging
from ..config import BACKENDS, PRECISIONS, DetectConfig, PipelineConfig
from ..errors import ConfigError, SinkError, StreamanonError
from ..generate.memorisation import eval_generator_main
from ..models.faceres import FaceResRecogniser
from ..models.recognizer import DlibRecogniser
from ..options import BY_DEST, EVAL, config_from_values
from ..progress import heartbeat
from . import report
from .adversary import (
    DEFAULT_METHODS,
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
from .data import load_annotations, load_identities
from .detection import dataset_stats, evaluate_detector, parse_det_sizes, parse_thresholds
from .identity import View, build_references, evaluate_identity, face_crop
from .natural import evaluate_natural, write_grid
from .product import ProductRunner, check_method_options, parse_methods
from .temporal import evaluate_temporal

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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    p.add_argument("--html", type=Path, metavar="PATH", help="write an offline HTML report (includes face images)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _recogniser_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("independent recogniser (dlib)")
    g.add_argument("--dlib-detector", default="hog", choices=["hog", "cnn"], help="dlib face detector (default hog)")
    g.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The ``streamanon eval`` parser with its subcommands (one ``_NAME_parser`` each)."""
    p = ArgParser(prog="streamanon eval", description="Measure how well streamanon removes identities.")
    sub = p.add_subparsers(dest="command", metavar="{identity,attack,adversary,detect,video,temporal,natural}")
    sub.required = True

    _identity_parser(sub)
    _attack_parser(sub)
    _adversary_parser(sub)
    _detect_parser(sub)
    _video_parser(sub)
    _temporal_parser(sub)
    _natural_parser(sub)
    return p


def _identity_parser(sub: Any) -> None:
    """``eval identity``: recognisability of identity photos after each method."""
    q = sub.add_parser("identity", help="recognisability of identity photos after each method")
    q.add_argument(
        "--faces",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="folder of <identity>/<image> sub-folders (repeatable: merged)",
    )
    q.add_argument(
        "--methods",
        default="none,blur,pixelate,solid",
        help="comma list; 'blur:2' = blur strength 2, 'pixelate:16' = 16 blocks (default none,blur,pixelate,solid)",
    )
    q.add_argument("--seed", type=int, default=0, help="seed for the anonymiser and example choice")
    q.add_argument(
        "--pad", type=float, default=0.5, help="border added around each photo before the product runs, x long side"
    )
    q.add_argument("--examples", type=int, default=6, help="faces shown in the HTML report (default 6)")
    _recogniser_options(q)
    q.add_argument(
        "--also",
        default="",
        metavar="NAMES",
        help="also score the same outputs with these recognisers (comma list: faceres; "
        "a transfer number for --method adversarial)",
    )
    q.add_argument(
        "--encode-crf",
        default="",
        metavar="CRFS",
        help="also score the outputs after H.264 (libx264 intra frame, --preset) at these CRFs, "
        "comma list (e.g. 18,28)",
    )
    _common(q)
    add_pipeline_options(q, EVAL)


def _attack_parser(sub: Any) -> None:
    """``eval attack``: a learned inverse trained on some identities."""
    a = sub.add_parser("attack", help="train a learned inverse on some identities, attack the others")
    a.add_argument(
        "--also", default="", metavar="NAMES", help="also score with these recognisers (comma list: faceres)"
    )
    a.add_argument("--faces", type=Path, action="append", required=True, metavar="DIR", help="as for identity")
    a.add_argument("--epochs", type=int, default=80, help="training epochs (default 80)")
    a.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and batches")
    a.add_argument("--holdout", type=float, default=0.4, help="share of identities held out (default 0.4)")
    a.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (default 1, deterministic)")
    a.add_argument("--pad", type=float, default=0.5, help="as for identity")
    _recogniser_options(a)
    _common(a)
    add_pipeline_options(a, EVAL)  # --method (comma list allowed), --blur-strength, --pixel-blocks, ...


def _detect_parser(sub: Any) -> None:
    """``eval detect``: the product's detector against face boxes."""
    d = sub.add_parser("detect", help="precision/recall/AP of the product's detector against face boxes")
    d.add_argument("--images", type=Path, required=True, metavar="DIR", help="image folder the annotations refer to")
    d.add_argument("--annotations", type=Path, required=True, metavar="FILE", help="annotation file")
    d.add_argument("--format", default="auto", choices=["auto", "wider", "dlib-xml", "youtube-faces"])
    d.add_argument("--threshold", default=str(DetectConfig().threshold), help="score threshold(s), comma list")
    d.add_argument("--det-size", default="auto", help="network long side(s): integers, auto, native; comma list")
    d.add_argument("--iou", type=float, default=0.5, help="IoU for a match (default 0.5)")
    d.add_argument("--min-size", type=float, default=0.0, help="ignore faces less tall than this (px)")
    d.add_argument("--threads", type=int, default=1, help="CPU threads per detector call (default 1)")
    d.add_argument(
        "--backend",
        default=DetectConfig().backend,
        choices=list(BACKENDS),
        help="inference backend (default auto, as the product)",
    )
    d.add_argument(
        "--precision",
        default=DetectConfig().precision,
        choices=list(PRECISIONS),
        help="network precision (default auto, as the product)",
    )
    d.add_argument(
        "--small-faces",
        default="off",
        choices=["auto", "on", "off"],
        help="add every upscaled tile of each image, merged as the product merges them "
        "(default off: the detector alone)",
    )
    d.add_argument(
        "--tile-scale", type=float, default=DetectConfig().tile_scale, help="--small-faces: tile upscaling (default 2)"
    )
    d.add_argument("--max-face-size", type=float, default=None, metavar="PX", help="drop detections larger than this")
    _common(d)


def _video_parser(sub: Any) -> None:
    """``eval video``: an original video and its anonymised copy."""
    v = sub.add_parser("video", help="frames of an anonymised video where a face is still recognised")
    v.add_argument("original", type=Path)
    v.add_argument("anonymised", type=Path)
    v.add_argument("--every", type=int, default=10, help="check every N-th frame (default 10)")
    v.add_argument("--save-leaks", type=Path, metavar="DIR", help="write crops of leaked faces here (off by default)")
    _recogniser_options(v)
    _common(v)


def _temporal_parser(sub: Any) -> None:
    """``eval temporal``: clips through each method, compared over time."""
    t = sub.add_parser("temporal", help="flicker, identity along a track and the background, per method and clip")
    t.add_argument("clips", type=Path, nargs="+", metavar="CLIP", help="video files (short: every frame is compared)")
    t.add_argument("--methods", default="solid,generate", help="comma list, as for identity (default solid,generate)")
    t.add_argument("--every", type=int, default=5, help="faces checked by the recogniser every N-th frame (default 5)")
    t.add_argument("--seed", type=int, default=0, help="seed of the randomised methods (default 0)")
    t.add_argument("--keep", type=Path, metavar="DIR", help="keep the anonymised clips here (default: deleted)")
    t.add_argument(
        "--no-attributes",
        action="store_true",
        help="skip the attribute drift (head pose, mouth, FaceRes age/gender)",
    )
    _recogniser_options(t)
    _common(t)
    add_pipeline_options(t, EVAL)


def _adversary_parser(sub: Any) -> None:
    o = AdversaryOptions()
    a = sub.add_parser("adversary", help="fine-tune a recogniser on anonymised faces; link other people's faces")
    a.add_argument(
        "--faces",
        action="append",
        required=True,
        metavar="DIR[,DIR...]",
        help="an identity set: folder(s) of <identity>/<image> (comma: merged into one set); repeat for more sets",
    )
    a.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma list, as for identity ({DEFAULT_METHODS})")
    a.add_argument("--epochs", type=int, default=o.epochs, help=f"adversary training epochs (default {o.epochs})")
    a.add_argument("--blocks", type=int, default=o.blocks, help="dlib ResNet blocks fine-tuned (default 1: the last)")
    a.add_argument("--holdout", type=float, default=o.holdout, help="share of identities kept for the test")
    a.add_argument("--max-identities", type=int, default=0, help="per set, draw this many identities (default all)")
    a.add_argument("--max-photos", type=int, default=0, help="per identity, at most this many photos (default all)")
    a.add_argument("--recognisers", default="dlib,faceres", help="off-the-shelf recognisers: dlib[,faceres]")
    a.add_argument("--seed", type=int, default=0, help="seed of the split, the training and the anonymisers")
    a.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (default 1)")
    a.add_argument("--pad", type=float, default=0.5, help="as for identity")
    _recogniser_options(a)
    _common(a)
    add_pipeline_options(a, EVAL)


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


def _natural_parser(sub: Any) -> None:
    n = sub.add_parser("natural", help="do replaced faces look real? (classifier test, dlib detectors, by face size)")
    n.add_argument("--faces", type=Path, action="append", required=True, metavar="DIR", help="as for identity")
    n.add_argument(
        "--methods",
        default="none,solid,blur,k-same,generate",
        help="comma list, as for identity ('none' = an unchanged copy; default none,solid,blur,k-same,generate)",
    )
    n.add_argument("--seed", type=int, default=0, help="seed of the methods, the folds and the photo sample")
    n.add_argument("--limit", type=int, default=0, metavar="N", help="use N photos drawn at random (default all)")
    n.add_argument("--pad", type=float, default=0.5, help="as for identity")
    n.add_argument("--no-cnn", action="store_true", help="skip dlib's CNN detector (slow on CPU)")
    n.add_argument(
        "--grid", type=Path, metavar="PATH", help="write a PNG of originals and replacements (it holds raw faces)"
    )
    n.add_argument("--grid-faces", type=int, default=8, help="faces in the --grid (default 8)")
    n.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    n.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    add_pipeline_options(n, EVAL)


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(data, indent=1, default=_jsonable))
    except OSError as exc:
        raise SinkError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _check_outputs(ns: argparse.Namespace) -> None:
    """Fail before the (long) run if an output cannot be written."""
    for opt in ("json", "html"):
        path: Path | None = getattr(ns, opt, None)
        if path is not None and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise SinkError(f"--{opt}: folder does not exist: {path.parent}")


def _eval_config(ns: argparse.Namespace) -> PipelineConfig:
    # eval's own arguments may share a name with an option of the other modes (--seed, temporal's
    # --keep DIR): only the options of eval become the config
    cfg = config_from_values({d: v for d, v in vars(ns).items() if d not in BY_DEST or EVAL in BY_DEST[d].modes})
    if ns.threads == 0:  # one ORT thread: faster on small stills and no spinning against dlib
        cfg = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, threads=1))
    return dataclasses.replace(cfg, anonymize=dataclasses.replace(cfg.anonymize, seed=ns.seed))


def _recogniser(ns: argparse.Namespace) -> Any:
    return DlibRecogniser(ns.dlib_detector, ns.upsample)


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


def _fmt_row(values: list[Any]) -> str:
    return "| " + " | ".join(report.fmt_text(v) for v in values) + " |"


def _print_table(cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A markdown table on stdout: ``cols``, then one line per row of values."""
    print(_fmt_row(list(cols)))
    print("|" + "---|" * len(cols))
    for r in rows:
        print(_fmt_row(list(r)))


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


def detect_command(ns: argparse.Namespace) -> int:
    """``eval detect``: precision/recall/AP per input size and threshold."""
    thresholds = parse_thresholds(ns.threshold)
    sizes = parse_det_sizes(ns.det_size)
    if not 0.0 < ns.iou <= 1.0:
        raise ConfigError(f"invalid --iou {ns.iou}: expected a number in (0, 1]")
    _check_outputs(ns)
    gts = load_annotations(ns.annotations, ns.images, ns.format)
    base = DetectConfig(
        threads=max(0, ns.threads),
        backend=ns.backend,
        precision=ns.precision,
        small_faces=ns.small_faces,
        tile_scale=ns.tile_scale,
        max_face_size=ns.max_face_size,
    )
    runs = [evaluate_detector(gts, s, thresholds, base=base, iou=ns.iou, min_size=ns.min_size) for s in sizes]
    out: dict[str, Any] = {
        "dataset": {**dataset_stats(gts), "annotations": str(ns.annotations), "format": ns.format},
        "settings": {"iou": ns.iou, "min_size": ns.min_size, "thresholds": thresholds},
        "runs": runs,
    }
    _write_json(ns.json, out)
    cols = [
        "det_size",
        "threshold",
        "ap",
        "precision",
        "recall",
        *(f"recall {b}" for b in runs[0]["buckets"]),
        "ms/img",
    ]
    rows = [_detect_row(run, t) for run in runs for t in thresholds]
    ds = out["dataset"]
    print(f"{ds['images']} images, {ds['faces']} faces ({ds['ignored']} ignored), IoU {ns.iou}")
    _print_table(cols, ([r[c] for c in cols] for r in rows))
    if ns.html:
        report.write_html(
            ns.html,
            "streamanon eval detect",
            [
                ("Results", report.table_html(rows, cols)),
                *[
                    (f"Recall vs face size (threshold {t:g})", report.plot_recall_vs_size(runs, f"{t:g}"))
                    for t in thresholds
                ],
            ],
        )
    return 0


def _detect_row(run: dict[str, Any], t: float) -> dict[str, Any]:
    """One line of the detect table: a run (one input size) at threshold ``t``."""
    key = f"{t:g}"
    at = run["overall"]["at"][key]
    return {
        "det_size": run["det_size"],
        "threshold": t,
        "ap": run["overall"]["ap"],
        "precision": at["precision"],
        "recall": at["recall"],
        "ms/img": run["ms_per_image"],
        **{f"recall {b}": v["at"][key]["recall"] for b, v in run["buckets"].items()},
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


TEMPORAL_COLUMNS = (
    "clip",
    "method",
    "frames",
    "fps",
    "anonymize_ms_per_face",
    "psnr_outside",
    "flicker_ratio",
    "leakage",
    "dlib_survival",
    "product_survival",
    "intra_track_distance",
    "intra_track_distance_original",
    "intra_track_same",
    "inter_track_pairs",
    "inter_track_distance",
    "inter_track_same",
    "pose_drift_yaw",
    "pose_drift_pitch",
    "pose_drift_roll",
    "mouth_agreement",
    "mouth_open_original",
    "age_drift",
    "gender_agreement",
)


def temporal_command(ns: argparse.Namespace) -> int:
    """``eval temporal``: each method on each clip through the product, compared over time."""
    if ns.every < 1:
        raise ConfigError(f"invalid --every {ns.every}: expected an integer >= 1")
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    _check_outputs(ns)
    res = evaluate_temporal(
        ns.clips, specs, config, _recogniser(ns), every=ns.every, keep=ns.keep, attributes=not ns.no_attributes
    )
    res["settings"] = {"config": config.to_dict(), "seed": ns.seed}
    _write_json(ns.json, res)
    rows = [{"clip": c, "method": m, **v} for c, ms in res["clips"].items() for m, v in ms.items()]
    _print_table(TEMPORAL_COLUMNS, ([r.get(c) for c in TEMPORAL_COLUMNS] for r in rows))
    if ns.html:
        report.write_html(ns.html, "streamanon eval temporal", [("Results", report.table_html(rows, TEMPORAL_COLUMNS))])
    return 0


NATURAL_COLUMNS = ("method", "faces", "classifier_accuracy", "hog_found", "hog_score", "cnn_found", "cnn_score")


def natural_command(ns: argparse.Namespace) -> int:
    """``eval natural``: classifier test, dlib detectors and face sizes per method."""
    config = _eval_config(ns)
    specs = parse_methods(ns.methods, config.anonymize)
    product = ProductRunner(config, pad=ns.pad)
    _check_outputs(ns)
    if ns.grid is not None and not (ns.grid.parent if str(ns.grid.parent) else Path(".")).is_dir():
        raise SinkError(f"--grid: folder does not exist: {ns.grid.parent}")
    if ns.limit < 0:
        raise ConfigError(f"invalid --limit {ns.limit}: expected 0 (all) or a positive number")
    images = load_identities(ns.faces)
    if ns.limit and ns.limit < len(images):
        pick = np.random.default_rng(ns.seed).choice(len(images), size=ns.limit, replace=False)
        images = [images[i] for i in sorted(pick.tolist())]
    hog = DlibRecogniser("hog", 1)  # finds the original faces (down to ~40 px)
    refs, skipped = build_references(images, hog)
    if len({r.identity for r in refs}) < 2:
        raise ConfigError(f"dlib found faces of fewer than two identities in {len(images)} photos: nothing to compare")
    hog0 = DlibRecogniser("hog", 0)  # on windows with the face at 100 px
    cnn = None if ns.no_cnn else DlibRecogniser("cnn", 0)
    features = FaceResRecogniser(locator=hog)
    keep = list(range(min(ns.grid_faces, len(refs)))) if ns.grid is not None else []
    if keep:
        keep = sorted(np.random.default_rng(ns.seed).choice(len(refs), size=len(keep), replace=False).tolist())
    result, raw = evaluate_natural(
        refs, product, specs, features, hog0, cnn, keep, ns.seed, progress=lambda k: log.info("method %s", k)
    )
    info = {
        "images": len(images),
        "faces": len(refs),
        "identities": len({r.identity for r in refs}),
        "no_face_found": len(skipped),
    }
    result.update(dataset=info, settings={"config": config.to_dict(), "pad": ns.pad, "seed": ns.seed})
    _write_json(ns.json, result)
    print(f"{info['faces']} faces, {info['identities']} identities; classifier 0.5 = replacements look real")
    for label, sub in (("all faces", None), ("faces >= 48 px", "ge48")):
        print(f"\n{label}")
        picked = ((k, m if sub is None else m[sub]) for k, m in result["methods"].items())
        _print_table(NATURAL_COLUMNS, ([k, *(r.get(c) for c in NATURAL_COLUMNS[1:])] for k, r in picked))
    print("\nby face size (classifier accuracy / hog found)")
    for k, m in result["methods"].items():
        bands = ", ".join(
            f"{b}: {report.fmt_text(v['classifier_accuracy'])} / {report.fmt_text(v['hog_found'])} (n={v['faces']})"
            for b, v in m["by_size"].items()
        )
        print(f"{k}: {bands}")
    if ns.grid is not None:
        write_grid(ns.grid, refs, raw, keep)
    return 0


def _check_method_options(parser: argparse.ArgumentParser, ns: argparse.Namespace, argv: list[str]) -> None:
    """The pipeline options typed must be options of a method evaluated (``--methods``, or
    ``--method`` for attack): ConfigError naming the first that is not."""
    if not hasattr(ns, "method"):  # no pipeline options (detect, video)
        return
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[ns.command]
    flag, text = ("--methods", ns.methods) if hasattr(ns, "methods") else ("--method", ns.method)
    schema = _options_of_eval(sub)
    given = given_options(sub, argv[argv.index(ns.command) + 1 :]) & schema
    specs = parse_methods(text, _eval_config(ns).anonymize)
    check_method_options({dest: getattr(ns, dest) for dest in given}, specs, flag)


def _options_of_eval(parser: argparse.ArgumentParser) -> set[str]:
    """The dests of ``parser``'s pipeline options (not its own arguments of the same name:
    temporal's ``--keep DIR``, eval's ``--seed``)."""
    out = set()
    for a in parser._actions:
        opt = BY_DEST.get(a.dest)
        if opt is not None and EVAL in opt.modes and {opt.flag, *(opt.negation or ())[:1]} & set(a.option_strings):
            out.add(a.dest)
    return out


COMMANDS = {
    "natural": natural_command,
    "identity": identity_command,
    "attack": attack_command,
    "adversary": adversary_command,
    "detect": detect_command,
    "video": video_command,
    "temporal": temporal_command,
}


def main(argv: list[str]) -> int:
    """Entry point of ``streamanon eval``; errors propagate to ``streamanon.cli.main``."""
    if argv[:1] == ["generator"]:  # the memorisation check has its own parser (extra [torch] not needed)
        return eval_generator_main(argv[1:])
    parser = build_parser()
    ns = parser.parse_args(argv)
    _check_method_options(parser, ns, argv)
    setup_logging(False)
    if ns.verbose:  # progress of streamanon only (dependencies stay quiet)
        logging.getLogger("streamanon").setLevel(logging.INFO)
    with heartbeat(f"eval {ns.command}"):  # a line every few seconds: a long evaluation is not a hang
        code: int = COMMANDS[ns.command](ns)
    sys.stdout.flush()
    return code
