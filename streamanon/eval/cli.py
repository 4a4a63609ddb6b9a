"""``streamanon eval identity|attack|adversary|detect|video|temporal|natural``: measure privacy and quality.

Results print as a table on stdout; ``--json PATH`` writes them machine-readable and
``--html PATH`` an offline report with plots (face images appear only in that report).
This module holds the parsers and the dispatch; the commands are in ``commands_privacy``
(identity, attack, adversary, video) and ``commands_quality`` (detect, temporal, natural),
with what they share in ``commands_common``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..cli import add_pipeline_options, given_options
from ..cliutil import ArgParser, setup_logging
from ..config import BACKENDS, PRECISIONS, DetectConfig
from ..generate.memorisation import eval_generator_main
from ..options import BY_DEST, EVAL
from ..progress import heartbeat
from .adversary import DEFAULT_METHODS, AdversaryOptions
from .commands_common import _eval_config
from .commands_privacy import adversary_command, attack_command, identity_command, video_command
from .commands_quality import detect_command, natural_command, temporal_command
from .product import check_method_options, parse_methods


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
        "--face-px",
        type=float,
        metavar="PX",
        help="scale each photo down so that its face is PX px (20-1024; faces already smaller stay): CCTV-size faces",
    )
    n.add_argument(
        "--grid", type=Path, metavar="PATH", help="write a PNG of originals and replacements (it holds raw faces)"
    )
    n.add_argument("--grid-faces", type=int, default=8, help="faces in the --grid (default 8)")
    n.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    n.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    add_pipeline_options(n, EVAL)


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
