"""Training loop of the generator: GAN steps, EMA, checkpoints that resume exactly, sample grids.

Everything a run needs to continue is in the checkpoint (weights of G, D and the EMA
generator, both optimisers, step, epoch, losses, wall time, settings). Batches and latent
codes are drawn from generators seeded by ``(seed, epoch)`` and ``(seed, step)``, so a
resumed run sees the same batches it would have seen without the interruption.

Losses (weights in ``TrainConfig``): hinge GAN, R1 on real images every ``r1_every``
steps (lazy regularisation), L1 between the raw output and the chip outside the mask
(``ctx``: the generated region must continue its surroundings), L1 inside the mask
(``rec``: not part of DeepPrivacy2's recipe; it is what lets a model trained for minutes
on a CPU paint a face at all, and the identity term pushes away from the original), and
identity repulsion through dlib's recogniser (``losses.IdentityRepulsion``). Optional
(off by default, on for the shipped v2): each latent's target identity
(``losses.IdentityTargets``, ``target_*``), repulsion from every training face
(``bank_weight``) and excess total variation (``tv_weight``); and the older diversity
terms (``rec_pool``, ``div_*``, ``id_div_weight``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

from ..anonymize.generator_chip import FLIP68
from ..errors import ConfigError, ModelError
from .data import ChipSet
from .losses import (
    IdentityRepulsion,
    IdentityTargets,
    d_hinge,
    distance,
    excess_tv,
    g_hinge,
    lowpass_l1,
    masked_l1,
    mode_seeking,
    nearest_distance,
    r1_penalty,
)
from .model import Discriminator, Generator, GeneratorConfig

log = logging.getLogger(__name__)

CHECKPOINT_KIND = "streamanon-generator"
CHECKPOINT_VERSION = 1
LOSS_NAMES = (
    "d", "r1", "g_adv", "ctx", "rec", "div", "id", "id_dist", "id_div", "id_pair",
    "tgt", "tgt_dist", "bank", "bank_dist", "tv",
)  # fmt: skip
# settings of checkpoints written before a field existed: a resumed old run keeps its recipe
LEGACY_TRAIN = {
    "rec_pool": 1, "div_weight": 0.0, "div_target": 0.04, "id_div_weight": 0.0,
    "target_weight": 0.0, "target_radius": 0.3, "target_scale": 1.0, "bank_weight": 0.0,
    "tv_weight": 0.0,
}  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (stored in the checkpoint; a resumed run keeps them)."""

    batch: int = 8
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.1  # StyleGAN2 heuristic 0.0002 * res^2 / batch = 0.1 at 64 px, batch 8 (1.0 flattened D)
    r1_every: int = 4
    ctx_weight: float = 1.0
    rec_weight: float = 4.0
    id_weight: float = 0.5
    id_margin: float = 0.1
    id_every: int = 2  # identity repulsion every n-th step (dlib's ResNet costs a G step)
    id_faces: int = 8  # on at most this many faces of the batch
    ema_decay: float = 0.995
    seed: int = 0
    flip: bool = True
    mask_jitter: int = 2  # masks randomly grown or shrunk by up to this many pixels
    # Diversity of z (off by default: the shipped model was trained without; the card gives
    # the measured trade-off). rec_pool: the in-mask L1 compares pool x pool block means
    # only, so colour, light and pose come from the real face and identity details are left
    # to z (1 = every pixel).
    rec_pool: int = 1
    # bounded mode-seeking term (Mao et al. 2019): in-mask change per unit of latent change
    div_weight: float = 0.0
    div_target: float = 0.04
    # dlib distance between the faces of two latents pushed above the same-person threshold + margin
    id_div_weight: float = 0.0
    # per-latent target identities (losses.IdentityTargets): the generated face's dlib
    # descriptor pulled to within target_radius of its latent's target; target_scale
    # spreads the targets (1 = like the training faces)
    target_weight: float = 0.0
    target_radius: float = 0.3
    target_scale: float = 1.0
    # every training face's descriptor repelled like the original's (nobody of the training set is painted)
    bank_weight: float = 0.0
    # total variation inside the mask beyond the real face's (losses.excess_tv): no stripes
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.batch < 1 or self.r1_every < 1 or self.id_every < 1 or self.id_faces < 1 or self.rec_pool < 1:
            raise ConfigError("batch, r1_every, id_every, id_faces and rec_pool must be >= 1")
        if self.div_target <= 0:
            raise ConfigError(f"invalid div_target={self.div_target}: expected a number > 0")
        if self.target_radius < 0 or self.target_scale <= 0:
            raise ConfigError("target_radius must be >= 0 and target_scale > 0")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"invalid ema_decay={self.ema_decay}: expected a number in [0, 1)")


def _f(t: Tensor) -> float:
    return float(t.detach())


@dataclass
class Batch:
    chip: Tensor  # (N, 3, S, S) in [0, 1]
    mask: Tensor  # (N, 1, S, S)
    landmarks: Tensor  # (N, 68, 2)


def to_batch(data: ChipSet, idx: NDArray[np.int64], device: str) -> Batch:
    chip = torch.from_numpy(np.ascontiguousarray(data.chips[idx].transpose(0, 3, 1, 2))).float().div_(255)
    mask = torch.from_numpy(data.masks[idx][:, None].astype(np.float32))
    lms = torch.from_numpy(np.ascontiguousarray(data.landmarks[idx]))
    return Batch(chip.to(device), mask.to(device), lms.to(device))


def augment(b: Batch, gen: torch.Generator, flip: bool, jitter: int) -> Batch:
    """Random horizontal flips (landmarks mirrored and re-indexed) and mask growth/shrinkage
    (the product's ellipse moves by a pixel or two with the detector's box)."""
    chip, mask, lms = b.chip, b.mask, b.landmarks
    s = chip.shape[-1]
    if flip:
        f = torch.rand(len(chip), generator=gen) < 0.5
        if f.any():
            fi = f.to(chip.device)
            chip = torch.where(fi[:, None, None, None], chip.flip(-1), chip)
            mask = torch.where(fi[:, None, None, None], mask.flip(-1), mask)
            flipped = lms[:, torch.from_numpy(FLIP68).to(lms.device)].clone()
            flipped[..., 0] = s - 1 - flipped[..., 0]
            lms = torch.where(fi[:, None, None], flipped, lms)
    if jitter:
        k = int(torch.randint(-jitter, jitter + 1, (1,), generator=gen))
        if k > 0:
            mask = F.max_pool2d(mask, 2 * k + 1, 1, k)
        elif k < 0:
            mask = -F.max_pool2d(-mask, -2 * k + 1, 1, -k)
    return Batch(chip, mask, lms)


@dataclass
class History:
    """Mean losses per epoch and the wall time spent training."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class _Running:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """While active, SIGINT/SIGTERM only ask the loop to stop after the current step, so a
    checkpoint is never written from half-updated weights. A second Ctrl-C stops at once."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        log.warning("stopping after this step (Ctrl-C again to stop now)")
        flag.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag.is_set
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Trainer:
    """One training run (fresh or resumed) of a generator on a ``ChipSet``.

    Args:
        data: the training chips (their size must be the model's).
        gcfg: architecture (ignored on resume: the checkpoint's is used).
        tcfg: optimisation settings (ignored on resume).
        device: ``cpu`` or ``cuda``.
        identity: the identity-repulsion loss (default: dlib's recogniser when
            ``tcfg.id_weight`` > 0).
    """

    def __init__(
        self,
        data: ChipSet,
        gcfg: GeneratorConfig,
        tcfg: TrainConfig,
        device: str = "cpu",
        identity: IdentityRepulsion | None = None,
    ) -> None:
        if data.size != gcfg.size:
            raise ConfigError(f"training chips are {data.size} px but the model is {gcfg.size} px")
        if len(data) < 2:
            raise ConfigError(f"need at least 2 training faces, got {len(data)}")
        self.data, self.gcfg, self.tcfg, self.device = data, gcfg, tcfg, device
        torch.manual_seed(tcfg.seed)
        self.G = Generator(gcfg).to(device)
        self.D = Discriminator(gcfg).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (tcfg.beta1, tcfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=tcfg.lr_g, betas=betas)
        # lazy R1: the optimiser step is scaled as in StyleGAN2's lazy regularisation
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=tcfg.lr_d, betas=betas)
        self.identity = (
            identity
            if identity is not None or not self.uses_identity(tcfg)
            else IdentityRepulsion(tcfg.id_margin, device)
        )
        self.targets: IdentityTargets | None = None  # fitted at the first step that needs them
        self.step = 0
        self.history = History()
        self.stopped_by: str | None = None  # why the last ``fit`` ended early
        self.batch_size = min(tcfg.batch, len(data))

    # -- schedule ------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.data) // self.batch_size)

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def batch_indices(self, step: int) -> NDArray[np.int64]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.tcfg.seed, epoch]).permutation(len(self.data))
        return order[pos * self.batch_size : (pos + 1) * self.batch_size]

    def _gen(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.tcfg.seed * 1_000_003 + step)

    @staticmethod
    def uses_identity(t: TrainConfig) -> bool:
        """Whether any term needs dlib's recogniser."""
        return max(t.id_weight, t.id_div_weight, t.target_weight, t.bank_weight) > 0

    def identity_targets(self) -> IdentityTargets:
        """The latent-to-identity map and the training faces' descriptors, computed once
        from every training face (kept in the checkpoint: a resumed run keeps its targets)."""
        if self.targets is None:
            assert self.identity is not None
            log.info("embedding %d training faces for the identity targets", len(self.data))
            b = to_batch(self.data, np.arange(len(self.data)), self.device)
            embs = self.identity.embed_set(b.chip, b.landmarks)  # in batches of its own
            self.targets = IdentityTargets.fit(embs, self.gcfg.z_dim, self.tcfg.target_scale)
        return self.targets

    def _identity_terms(
        self, fake: Tensor, z: Tensor, b: Batch, fake2: Tensor | None, z2: Tensor | None
    ) -> tuple[Tensor, dict[str, float]]:
        """Identity losses on the first ``id_faces`` faces (and their second latents' faces)."""
        assert self.identity is not None
        t = self.tcfg
        k = min(len(fake), t.id_faces)
        faces, zs, reps = fake[:k], z[:k], 1
        if fake2 is not None and z2 is not None:
            faces, zs, reps = torch.cat([faces, fake2[:k]]), torch.cat([zs, z2[:k]]), 2
        e_gen, e_orig = self.identity.embeddings(faces, b.chip[:k], b.landmarks[:k])
        dist = distance(e_gen, e_orig)
        margin = self.identity.target
        id_loss = F.relu(margin - dist).mean()
        loss = t.id_weight * id_loss
        out = {"id": _f(id_loss), "id_dist": _f(dist.mean())}
        if reps == 2:
            d12 = distance(e_gen[:k], e_gen[k:])
            id_div = F.relu(margin - d12).mean()
            loss = loss + t.id_div_weight * id_div
            out |= {"id_div": _f(id_div), "id_pair": _f(d12.mean())}
        if t.target_weight > 0 or t.bank_weight > 0:
            targets = self.identity_targets()
            if t.target_weight > 0:
                d_t = distance(e_gen, targets.target(zs))
                tgt = F.relu(d_t - t.target_radius).mean()
                loss = loss + t.target_weight * tgt
                out |= {"tgt": _f(tgt), "tgt_dist": _f(d_t.mean())}
            if t.bank_weight > 0:
                d_b = nearest_distance(e_gen, targets.bank)
                bank = F.relu(margin - d_b).mean()
                loss = loss + t.bank_weight * bank
                out |= {"bank": _f(bank), "bank_dist": _f(d_b.mean())}
        return loss * t.id_every, out

    # -- one step --------------------------------------------------------------------
    def train_step(self, b: Batch, gen: torch.Generator) -> dict[str, float]:
        t = self.tcfg
        n = len(b.chip)
        z = torch.randn(n, self.gcfg.z_dim, generator=gen).to(self.device)
        out: dict[str, float] = {}
        # discriminator
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake, _ = self.G(b.chip, b.mask, b.landmarks, z)
        loss_d = d_hinge(self.D(b.chip, b.mask, b.landmarks), self.D(fake, b.mask, b.landmarks))
        out["d"] = _f(loss_d)
        if self.step % t.r1_every == 0 and t.r1_gamma > 0:
            real = b.chip.detach().requires_grad_(True)
            r1 = r1_penalty(self.D(real, b.mask, b.landmarks), real)
            loss_d = loss_d + t.r1_gamma / 2 * r1 * t.r1_every
            out["r1"] = _f(r1)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()  # type: ignore[no-untyped-call]
        self.opt_d.step()
        # generator: two latents per face (mode seeking needs pairs); one forward pass for both
        self.D.requires_grad_(False)
        pairs = t.div_weight > 0 or t.id_div_weight > 0
        z2: Tensor | None = None
        fake2: Tensor | None = None
        z = torch.randn(n, self.gcfg.z_dim, generator=gen).to(self.device)
        if pairs:
            z2 = torch.randn(n, self.gcfg.z_dim, generator=gen).to(self.device)
            both, raw_both = self.G(
                b.chip.repeat(2, 1, 1, 1), b.mask.repeat(2, 1, 1, 1), b.landmarks.repeat(2, 1, 1), torch.cat([z, z2])
            )
            fake, fake2, raw, raw2 = both[:n], both[n:], raw_both[:n], raw_both[n:]
            cond = (b.mask.repeat(2, 1, 1, 1), b.landmarks.repeat(2, 1, 1))
            g_adv = g_hinge(self.D(both, *cond))
            ctx = masked_l1(raw_both, b.chip.repeat(2, 1, 1, 1), 1 - cond[0])
            rec = lowpass_l1(raw_both, b.chip.repeat(2, 1, 1, 1), cond[0], t.rec_pool)
        else:
            fake, raw = self.G(b.chip, b.mask, b.landmarks, z)
            g_adv = g_hinge(self.D(fake, b.mask, b.landmarks))
            ctx = masked_l1(raw, b.chip, 1 - b.mask)
            rec = lowpass_l1(raw, b.chip, b.mask, t.rec_pool)
        loss_g = g_adv + t.ctx_weight * ctx + t.rec_weight * rec
        out |= {"g_adv": _f(g_adv), "ctx": _f(ctx), "rec": _f(rec)}
        if t.tv_weight > 0:
            tv = excess_tv(raw, b.chip, b.mask)
            loss_g = loss_g + t.tv_weight * tv
            out |= {"tv": _f(tv)}
        if z2 is not None and t.div_weight > 0:
            div = mode_seeking(raw, raw2, z, z2, b.mask, t.div_target)
            loss_g = loss_g + t.div_weight * div
            out |= {"div": _f(div)}
        if self.identity is not None and self.uses_identity(t) and self.step % t.id_every == 0:
            id_loss, id_out = self._identity_terms(fake, z, b, fake2, z2)
            loss_g = loss_g + id_loss
            out |= id_out
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()  # type: ignore[no-untyped-call]
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        # short runs: the average must not be dominated by the random initialisation
        decay = min(self.tcfg.ema_decay, (1 + self.step) / (10 + self.step))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            be.copy_(b)

    @torch.no_grad()
    def evaluate(self, b: Batch, ema: bool = True) -> dict[str, float]:
        """L1 losses of the (EMA) generator on a fixed batch with fixed latents."""
        g = self.G_ema if ema else self.G
        z = torch.randn(len(b.chip), self.gcfg.z_dim, generator=torch.Generator().manual_seed(12345)).to(self.device)
        _, raw = g(b.chip, b.mask, b.landmarks, z)
        return {
            "ctx": float(masked_l1(raw, b.chip, 1 - b.mask)),
            "rec": float(lowpass_l1(raw, b.chip, b.mask, self.tcfg.rec_pool)),  # the term trained
            "rec_full": float(masked_l1(raw, b.chip, b.mask)),
        }

    def init_generator(self, path: str | Path) -> None:
        """Start G (and its EMA) from trained weights: a checkpoint's EMA generator or an
        exported ONNX file (its initializers are the state dict, prefixed ``gen.``).

        Raises:
            ModelError: missing file, or weights that do not fit this architecture.
        """
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"generator weights {p} not found")
        if p.suffix == ".onnx":
            import onnx
            from onnx import numpy_helper

            try:
                model = onnx.load(str(p))
            except Exception as exc:  # protobuf decode errors
                raise ModelError(f"generator weights {p} are not a readable ONNX file") from exc
            sd = {
                i.name.removeprefix("gen."): torch.from_numpy(numpy_helper.to_array(i).copy())
                for i in model.graph.initializer
                if i.name.startswith("gen.")
            }
        else:
            sd = read_checkpoint(p)["G_ema"]
        try:
            self.G.load_state_dict(sd)
        except RuntimeError as exc:
            raise ModelError(f"generator weights {p} do not fit the model: {str(exc).splitlines()[0][:160]}") from exc
        self.G_ema.load_state_dict(self.G.state_dict())

    # -- the loop --------------------------------------------------------------------
    def fit(
        self,
        total_steps: int,
        checkpoint: Path | None = None,
        checkpoint_every: int = 200,
        on_epoch: Callable[[Trainer], None] | None = None,
        progress: bool = True,
        time_limit: float | None = None,
    ) -> bool:
        """Train until ``total_steps`` (counted from the first run); True if it got there,
        False if stopped by Ctrl-C/SIGTERM or after ``time_limit`` seconds of this call
        (the checkpoint is then written first, after the step in progress)."""
        from tqdm import tqdm

        self.G.train()
        running = _Running()
        bar = tqdm(total=total_steps, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)
        finished = clean = False
        t0 = start = time.monotonic()
        try:
            with stop_requests() as stopping:
                while self.step < total_steps:
                    if stopping() or (time_limit is not None and time.monotonic() - start >= time_limit):
                        self.stopped_by = "signal" if stopping() else "time limit"
                        break
                    losses = self._next_step()
                    running.add(losses)
                    bar.update(1)
                    bar.set_postfix(
                        {k: f"{v:.3f}" for k, v in losses.items() if k in ("d", "g_adv", "rec", "id_dist")},
                        refresh=False,
                    )
                    epoch_done = self.step % self.steps_per_epoch == 0
                    if epoch_done or self.step == total_steps:
                        running = self._close_epoch(running)
                    if checkpoint is not None and (
                        self.step % checkpoint_every == 0 or epoch_done or self.step == total_steps
                    ):
                        t0 = self._save_timed(checkpoint, t0)
                    if epoch_done and on_epoch is not None:
                        on_epoch(self)
                else:
                    finished = True
            clean = True
        finally:
            bar.close()
            self.history.seconds += time.monotonic() - t0
            # after an exception (a second Ctrl-C mid-step, divergence) the weights may be
            # half-updated: the last periodic checkpoint is kept instead
            if checkpoint is not None and clean and not finished:
                if running.counts:
                    self._close_epoch(running, partial=True)
                self.save(checkpoint)
        return finished

    def _next_step(self) -> dict[str, float]:
        """One training step on the step's (augmented) batch; its losses.

        Raises:
            ModelError: a loss is not finite (training diverged).
        """
        step = self.step
        gen = self._gen(step)
        b = augment(
            to_batch(self.data, self.batch_indices(step), self.device), gen, self.tcfg.flip, self.tcfg.mask_jitter
        )
        losses = self.train_step(b, gen)
        if not all(math.isfinite(v) for v in losses.values()):
            raise ModelError(f"training diverged at step {step}: {losses}")
        return losses

    def _close_epoch(self, running: _Running, partial: bool = False) -> _Running:
        """Record the mean losses since the last record (``partial``: the run stopped mid-epoch);
        a fresh average for the next."""
        record = {"epoch": float(self.epoch), "step": float(self.step), **running.means()}
        self.history.epochs.append({**record, "partial": 1.0} if partial else record)
        return _Running()

    def _save_timed(self, checkpoint: Path, t0: float) -> float:
        """Count the training time since ``t0``, then write the checkpoint; the new ``t0``."""
        self.history.seconds += time.monotonic() - t0
        t0 = time.monotonic()
        self.save(checkpoint)
        return t0

    # -- checkpoints -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "config": self.gcfg.to_dict(),
            "train": asdict(self.tcfg),
            "step": self.step,
            "batch_size": self.batch_size,
            "chips": len(self.data),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "history": {"epochs": self.history.epochs, "seconds": self.history.seconds},
            **({} if self.targets is None else {"targets": self.targets.state()}),
        }

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically (a crash mid-write keeps the previous one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    @classmethod
    def resume(
        cls,
        path: Path,
        data: ChipSet,
        device: str = "cpu",
        identity: IdentityRepulsion | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Trainer:
        """A trainer in the state of checkpoint ``path``; ``changes`` replace settings of
        its ``TrainConfig`` from here on (the checkpoint then records the new ones).

        Raises:
            ModelError: the file is missing or is not a generator checkpoint.
            ConfigError: the chips do not fit the checkpoint's model.
        """
        state = read_checkpoint(path)
        gcfg = GeneratorConfig(**state["config"])
        tcfg = TrainConfig(**(LEGACY_TRAIN | state["train"] | (changes or {})))
        tr = cls(data, gcfg, tcfg, device, identity)
        try:
            tr.G.load_state_dict(state["G"])
            tr.D.load_state_dict(state["D"])
            tr.G_ema.load_state_dict(state["G_ema"])
            tr.opt_g.load_state_dict(state["opt_g"])
            tr.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelError(f"{path}: checkpoint does not match its model: {str(exc).splitlines()[0]}") from exc
        tr.step = int(state["step"])
        if "targets" in state and tcfg.target_scale == state["train"].get("target_scale", tcfg.target_scale):
            tr.targets = IdentityTargets.from_state(state["targets"])  # else refitted at the new scale
        if int(state.get("batch_size", tr.batch_size)) != tr.batch_size or int(state.get("chips", len(data))) != len(
            data
        ):
            log.warning(
                "resuming on different data (%d chips, was %s): batches differ from the first run",
                len(data),
                state.get("chips"),
            )
        hist = state.get("history", {})
        tr.history = History(list(hist.get("epochs", [])), float(hist.get("seconds", 0.0)))
        return tr


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a generator ``.pt`` file (tensors only: ``weights_only``).

    Raises:
        ModelError: missing, unreadable, or not a streamanon generator checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"generator model {p} not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for bad files
        raise ModelError(
            f"generator model {p} is unreadable (not a PyTorch checkpoint: {str(exc).splitlines()[0][:120]})"
        ) from exc
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ModelError(f"generator model {p} is not a streamanon generator checkpoint")
    if int(state.get("version", -1)) != CHECKPOINT_VERSION:
        raise ModelError(
            f"generator model {p} has checkpoint version {state.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    for key in ("config", "G_ema", "step"):
        if key not in state:
            raise ModelError(f"generator model {p} is incomplete (no {key!r})")
    return state


def load_generator(path: str | Path, ema: bool = True) -> tuple[Generator, dict[str, Any]]:
    """The trained generator of a checkpoint, in eval mode (the EMA weights by default).

    Raises:
        ModelError: see ``read_checkpoint``; also weights that do not fit the architecture.
    """
    state = read_checkpoint(path)
    try:
        gen = Generator(GeneratorConfig(**state["config"]))
        gen.load_state_dict(state["G_ema" if ema else "G"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(
            f"generator model {path}: weights do not fit the architecture: {str(exc).splitlines()[0][:160]}"
        ) from exc
    return gen.eval(), state


def sample_grid(gen: Generator, b: Batch, zs: int = 3, seed: int = 0) -> NDArray[np.uint8]:
    """RGB grid, one row per face: masked input | ``zs`` generated faces | original."""
    gen.eval()
    cols: list[Tensor] = [b.chip * (1 - b.mask) + 0.5 * b.mask]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(zs):
            z = torch.randn(len(b.chip), gen.cfg.z_dim, generator=g).to(b.chip.device)
            cols.append(gen(b.chip, b.mask, b.landmarks, z)[0])
    cols.append(b.chip)
    rows = [torch.cat([c[i] for c in cols], dim=2) for i in range(len(b.chip))]  # (3, S, S * columns)
    grid = torch.cat(rows, dim=1)
    return np.ascontiguousarray((grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())
