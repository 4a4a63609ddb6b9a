"""``streamanon train generator`` and ``streamanon export generator``.

Entry points for ``streamanon.cli.SUBCOMMANDS``: ``train_main`` (``train``) and
``export_main`` (``export``); each takes the arguments after its subcommand word, the
first of which is the model kind (``generator``). ``main`` takes both words.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..cliutil import ArgParser, setup_logging
from ..errors import ConfigError, MissingDependencyError
from .data import ChipSettings, build_cache, cap_per_label, scan_sources

if TYPE_CHECKING:
    from .data import ChipSet
    from .model import GeneratorConfig
    from .train import TrainConfig, Trainer

log = logging.getLogger(__name__)

KINDS = ("generator",)

#: ``train generator`` options that set a ``TrainConfig`` field: flag, field, type, help.
#: ``--lr`` sets the learning rates of both networks.
RECIPE: tuple[tuple[str, str, type, str], ...] = (
    ("--batch", "batch", int, "faces per step"),
    ("--lr", "lr_g", float, "learning rate of G and D"),
    ("--rec-weight", "rec_weight", float, "L1 inside the mask (0 = pure GAN)"),
    ("--rec-pool", "rec_pool", int, "the in-mask L1 compares POOL x POOL block means only (1 = every pixel)"),
    ("--id-weight", "id_weight", float, "identity repulsion from the original through dlib's recogniser (0 = off)"),
    ("--div-weight", "div_weight", float, "mode-seeking diversity term between two latents (0 = off)"),
    ("--div-target", "div_target", float, "in-mask change per unit latent change it pushes up to"),
    ("--id-div-weight", "id_div_weight", float, "dlib distance between two latents' faces pushed apart (0 = off)"),
    ("--target-weight", "target_weight", float, "pull each face towards its latent's target identity (0 = off)"),
    ("--target-radius", "target_radius", float, "dlib distance to the target that is not pulled further"),
    ("--target-scale", "target_scale", float, "spread of the target identities (1 = like the training faces)"),
    ("--bank-weight", "bank_weight", float, "repulsion from every training face's identity (0 = off)"),
    ("--tv-weight", "tv_weight", float, "total variation in the mask beyond the real face's (0 = off)"),
    ("--r1", "r1_gamma", float, "R1 penalty gamma"),
    ("--seed", "seed", int, "seed of initialisation, batches and latents"),
)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError.for_extra("torch", "torch") from exc


def train_parser() -> argparse.ArgumentParser:
    """The parser of ``streamanon train generator``: its data, the model, the recipe, the run."""
    from .model import GeneratorConfig
    from .train import TrainConfig

    p = ArgParser(
        prog="streamanon train generator",
        description="Train the face generator on the faces in DATA (images and videos, searched recursively).",
    )
    _add_data(p)
    _add_model(p, GeneratorConfig())
    _add_recipe(p, TrainConfig())
    _add_run(p)
    return p


def _add_data(p: argparse.ArgumentParser) -> None:
    """What to train on, and where to write."""
    p.add_argument("kind", choices=KINDS, help="what to train")
    p.add_argument("data", nargs="+", type=Path, metavar="DATA", help="folders or files of images and videos")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="MODEL.pt", help="checkpoint to write (and resume)"
    )
    p.add_argument(
        "--cache",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for the aligned training faces and sample grids (raw faces: keep it private)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from MODEL.pt (its settings are kept, except those given again)",
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs in total, counting resumed ones (default 10)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in total")


def _add_model(p: argparse.ArgumentParser, g: GeneratorConfig) -> None:
    """The generator's shape."""
    p.add_argument("--size", type=int, default=g.size, choices=[64, 128], help=f"chip size (default {g.size})")
    p.add_argument(
        "--channels",
        type=int,
        default=g.channels,
        help=f"generator width: first level's channels (default {g.channels})",
    )


def _add_recipe(p: argparse.ArgumentParser, t: TrainConfig) -> None:
    """``RECIPE``: the ``TrainConfig`` fields, then where the weights start."""
    for flag, name, kind, what in RECIPE:
        meta = flag.removeprefix("--").replace("-", "_").upper()
        # default None = "not given" (also for abbreviated flags): a new run takes TrainConfig's
        # default, a resumed one keeps the checkpoint's setting
        p.add_argument(flag, dest=name, type=kind, metavar=meta, help=f"{what} (default {getattr(t, name)})")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="start the generator from these weights (a .pt checkpoint or an exported .onnx)",
    )


def _add_run(p: argparse.ArgumentParser) -> None:
    """Device, checkpoints, the faces taken from each source, limits, output."""
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="write the checkpoint every N steps (default 100; also every epoch)",
    )
    p.add_argument("--video-step", type=int, default=4, help="use every N-th video frame (default 4)")
    p.add_argument("--max-per-video", type=int, default=150, help="faces per video at most (default 150)")
    p.add_argument(
        "--max-per-person",
        type=int,
        default=100,
        help="faces per person (folder) or video used for training (default 100)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop (with a checkpoint) after this much training time in this run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _setup(verbose: bool) -> None:
    setup_logging(False)
    if verbose:
        logging.getLogger("streamanon").setLevel(logging.INFO)


def train_main(argv: list[str]) -> int:
    """``streamanon train generator DATA... -o MODEL.pt --cache DIR``."""
    _need_torch()  # the parser's defaults come from the torch model's config
    ns = train_parser().parse_args(argv)
    _setup(ns.verbose)
    import torch

    _check_train_options(ns, torch.cuda.is_available())
    torch.set_num_threads(ns.threads)
    size = _model_size(ns, argv)
    data = _training_faces(ns, size)
    trainer = _trainer(ns, data, size)
    total = ns.epochs * trainer.steps_per_epoch
    if ns.max_steps is not None:
        total = min(total, ns.max_steps)
    samples_dir = ns.cache / "samples"
    t0 = time.monotonic()
    limit = None if ns.time_limit is None else ns.time_limit * 60
    on_epoch = _sample_writer(ns, data, size, samples_dir)
    done = trainer.fit(total, ns.output, ns.checkpoint_every, on_epoch, progress=not ns.no_progress, time_limit=limit)
    _print_run(trainer, total, time.monotonic() - t0)
    if not done and trainer.stopped_by == "time limit":
        print(f"time limit reached: checkpoint {ns.output} saved at step {trainer.step}; continue with --resume")
        return 0
    if not done:
        print(
            f"interrupted: checkpoint {ns.output} saved at step {trainer.step}; continue with --resume", file=sys.stderr
        )
        return 130
    print(f"checkpoint: {ns.output}; samples: {samples_dir}")
    return 0


def _check_train_options(ns: argparse.Namespace, cuda: bool) -> None:
    """One-line errors for options that cannot run, before any face is read."""
    if ns.device == "cuda" and not cuda:
        raise ConfigError(
            "--device cuda: PyTorch sees no CUDA GPU (install a CUDA build of torch, or use --device cpu)"
        )
    if ns.threads < 1:
        raise ConfigError("--threads must be >= 1")
    if ns.epochs < 1 or (ns.max_steps is not None and ns.max_steps < 1):
        raise ConfigError("--epochs and --max-steps must be >= 1")
    if ns.max_per_person < 1:
        raise ConfigError("--max-per-person must be >= 1")
    if ns.resume and ns.init is not None:
        raise ConfigError("--init starts a new run: it cannot be combined with --resume")


def _model_size(ns: argparse.Namespace, argv: list[str]) -> int:
    """The face size trained: the checkpoint's when resuming (``--size`` must agree)."""
    from .train import read_checkpoint

    if not ns.resume:
        if ns.output.exists():
            raise ConfigError(f"{ns.output} exists: pass --resume to continue it, or choose another -o")
        return int(ns.size)
    size = int(read_checkpoint(ns.output)["config"]["size"])
    if size != ns.size and "--size" in argv:
        raise ConfigError(f"--size {ns.size} does not match the checkpoint's {size} px model")
    return size


def _training_faces(ns: argparse.Namespace, size: int) -> ChipSet:
    """The face chips of ``ns.data`` (cached under ``ns.cache``), at most ``--max-per-person`` each."""
    from tqdm import tqdm

    settings = ChipSettings(size=size, video_step=ns.video_step, max_per_video=ns.max_per_video)
    sources = scan_sources(ns.data)
    with tqdm(total=len(sources), desc="faces", unit="file", disable=ns.no_progress) as bar:

        def step(i: int, n: int, name: str) -> None:
            bar.n = i
            bar.set_postfix_str(name[-30:], refresh=True)

        found = build_cache(sources, ns.cache, settings, progress=step)
        bar.n = len(sources)
    data = cap_per_label(found, ns.max_per_person)
    where = ns.cache / f"chips-{size}"
    print(f"training faces: {len(data)} of {len(found)} found in {len(found.sources)} files (cache {where})")
    return data


def _trainer(ns: argparse.Namespace, data: ChipSet, size: int) -> Trainer:
    """A new ``Trainer`` (``--init``: from another generator) or the checkpoint's, resumed."""
    from .model import GeneratorConfig, count_params, flops_per_face
    from .train import TrainConfig, Trainer

    recipe = {name: getattr(ns, name) for _, name, _, _ in RECIPE if getattr(ns, name) is not None}
    if "lr_g" in recipe:
        recipe["lr_d"] = recipe["lr_g"]  # --lr sets both networks' rates
    if ns.resume:
        if recipe:
            print(f"resumed with changed settings: {recipe}")
        trainer = Trainer.resume(ns.output, data, ns.device, changes=recipe)
    else:
        trainer = Trainer(data, GeneratorConfig(size=size, channels=ns.channels), TrainConfig(**recipe), ns.device)
        if ns.init is not None:
            trainer.init_generator(ns.init)
            print(f"generator initialised from {ns.init}")
    g = trainer.G
    params, gflops = count_params(g) / 1e6, flops_per_face(g) / 1e9
    print(f"generator: {params:.2f} M parameters, {gflops:.2f} GFLOPs per face at {size} px")
    return trainer


def _sample_writer(ns: argparse.Namespace, data: ChipSet, size: int, samples_dir: Path) -> Callable[[Trainer], None]:
    """The end-of-epoch hook: a grid of 8 fixed faces through the EMA generator, as a PNG."""
    from .train import sample_grid, to_batch

    fixed = to_batch(data, np.random.default_rng(1).permutation(len(data))[: min(8, len(data))], ns.device)

    def on_epoch(tr: Trainer) -> None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        grid = sample_grid(tr.G_ema, fixed)
        scale = max(1, 256 // size)
        big = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        out = samples_dir / f"{ns.output.stem}-epoch{tr.epoch:03d}.png"
        cv2.imwrite(str(out), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        last = tr.history.epochs[-1] if tr.history.epochs else {}
        log.info(
            "epoch %d (step %d): %s; samples %s", tr.epoch, tr.step, {k: round(v, 4) for k, v in last.items()}, out
        )

    return on_epoch


def _print_run(trainer: Trainer, total: int, wall: float) -> None:
    last = trainer.history.epochs[-1] if trainer.history.epochs else {}
    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k not in ("epoch", "step", "partial"))
    rate = (trainer.step and trainer.step / max(trainer.history.seconds, 1e-9)) or 0.0
    spent = trainer.history.seconds
    print(
        f"step {trainer.step}/{total}, epoch {trainer.epoch}, {wall:.0f} s this run, {spent:.0f} s in total"
        f" ({rate:.2f} steps/s)"
    )
    if losses:
        print(f"losses: {losses}")


def export_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="streamanon export generator",
        description="Export a trained generator to ONNX (dynamic batch) and check it.",
    )
    p.add_argument("kind", choices=KINDS, help="what to export")
    p.add_argument("model", type=Path, metavar="MODEL.pt", help="checkpoint written by 'streamanon train generator'")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.onnx", help="ONNX file to write")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return p


def export_main(argv: list[str]) -> int:
    """``streamanon export generator MODEL.pt -o MODEL.onnx``."""
    ns = export_parser().parse_args(argv)
    _setup(ns.verbose)
    _need_torch()
    import torch

    from .export import export_generator

    torch.set_num_threads(1)
    res = export_generator(ns.model, ns.output)
    print(f"wrote {res.path} ({res.bytes / 1e6:.1f} MB, {res.size} px chips, z {res.z_dim}, dynamic batch)")
    print(f"max |onnx - torch| on random inputs: {res.max_abs_diff:.2e}")
    return 0


def main(argv: list[str]) -> int:
    """``train generator ...`` or ``export generator ...``."""
    if not argv or argv[0] not in ("train", "export"):
        raise ConfigError("expected 'train generator ...' or 'export generator ...'")
    return train_main(argv[1:]) if argv[0] == "train" else export_main(argv[1:])


if __name__ == "__main__":  # python -m streamanon.generate.cli train generator ...
    sys.exit(main(sys.argv[1:]))
