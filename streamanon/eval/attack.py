"""``eval attack``: can a learned inverse undo the anonymisation?

A small ESPCN-style network (Shi et al. 2016: features computed at low resolution, a
sub-pixel convolution back to full size; here with a strided encoder and a global
residual) is trained on the TRAIN identities to map the product's anonymised face crop
back to the original crop. It is then applied to the HELD-OUT identities, whose photos
it never saw, and the recogniser scores the reconstructions exactly as ``eval identity``
scores the anonymised faces. Its reconstruction PSNR/SSIM against the original crop is
reported beside the anonymised input's, so the attack's strength is visible.

PyTorch (CPU) is an optional dependency: ``pip install 'streamanon[torch]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, MissingDependencyError
from ..models.recognizer import Recogniser, distance
from ..track.association import box_iou
from ..track.coverage import box_inside_fraction
from .identity import MISSED_BELOW, SURVIVAL_IOU, FaceResult, MethodResult, Reference, crop_box, summarise
from .metrics import psnr, ssim
from .product import MethodSpec, ProductRunner

log = logging.getLogger(__name__)

CROP = 64  # network input/output side (crops: 1.5 x the face box, see ``crop_box``)


def import_torch() -> Any:
    """``import torch`` or a ``MissingDependencyError`` naming the ``torch`` extra."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError.for_extra("torch", "torch") from exc
    return torch


def _crop(image: NDArray[np.uint8], rect: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    a, b, c, d = rect
    out = np.asarray(cv2.resize(image[b:d, a:c], (CROP, CROP), interpolation=cv2.INTER_AREA), np.uint8)
    return out


def build_model(torch: Any, features: int = 64) -> Any:
    """ESPCN-like inverse: strided encoder to 1/4 size, body, sub-pixel conv x4, residual."""
    nn = torch.nn

    class Inverse(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            f = features
            self.body = nn.Sequential(
                nn.Conv2d(3, f // 2, 5, stride=2, padding=2),
                nn.ReLU(),
                nn.Conv2d(f // 2, f, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(f, f, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(f, f, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(f, 3 * 16, 3, padding=1),
                nn.PixelShuffle(4),
            )
            self.refine = nn.Sequential(nn.Conv2d(6, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 3, 3, padding=1))

        def forward(self, x: Any) -> Any:
            coarse = x + self.body(x)
            return coarse + self.refine(torch.cat([coarse, x], dim=1))

    return Inverse()


@dataclass
class AttackData:
    """Crops of one method: anonymised inputs, original targets, where they came from."""

    inputs: NDArray[np.uint8]  # (N, CROP, CROP, 3)
    targets: NDArray[np.uint8]
    rects: list[tuple[int, int, int, int]]
    anonymised: list[NDArray[np.uint8]]
    missed: list[bool]


def collect(refs: Sequence[Reference], product: ProductRunner, spec: MethodSpec) -> AttackData:
    """Anonymise every reference with the product and cut the face crops."""
    ins, tgs, rects, anons, missed = [], [], [], [], []
    product.prepare([r.image for r in refs], spec)
    for i, ref in enumerate(refs):
        out = product.run(ref.image, spec, photo=i)
        h, w = ref.image.shape[:2]
        rect = crop_box(ref.face.box, w, h)
        ins.append(_crop(out.image, rect))
        tgs.append(_crop(ref.image, rect))
        rects.append(rect)
        anons.append(out.image)
        covered = float(box_inside_fraction(ref.face.box, out.dets.xyxy)[0]) if len(out.dets) else 0.0
        missed.append(covered < MISSED_BELOW)
    return AttackData(np.stack(ins), np.stack(tgs), rects, anons, missed)


def split_identities(identities: Sequence[str], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices of train and held-out identities (a seeded split BY IDENTITY)."""
    names = sorted(set(identities))
    if len(names) < 2:
        raise ConfigError(f"the attack needs at least 2 identities (train and held-out), found {len(names)}")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"invalid holdout={holdout!r}: expected a fraction in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(names))
    n_hold = min(len(names) - 1, max(1, round(holdout * len(names))))
    held = {names[i] for i in order[:n_hold]}
    train = [i for i, n in enumerate(identities) if n not in held]
    test = [i for i, n in enumerate(identities) if n in held]
    return train, test


def _to_tensor(torch: Any, arr: NDArray[np.uint8]) -> Any:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float().div(255.0)


def train_inverse(
    inputs: NDArray[np.uint8],
    targets: NDArray[np.uint8],
    *,
    epochs: int,
    seed: int,
    batch: int = 16,
    lr: float = 2e-3,
    threads: int = 1,
    progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Train the inverse on (anonymised, original) crops; deterministic for a seed.

    Augmentation: random horizontal flips. Loss: L1. Optimiser: Adam with cosine decay.
    """
    torch = import_torch()
    if epochs < 1:
        raise ConfigError(f"invalid epochs={epochs!r}: expected an integer >= 1")
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        model = build_model(torch)
        x_all, y_all = _to_tensor(torch, inputs), _to_tensor(torch, targets)
        rng = np.random.default_rng(seed)
        steps_per_epoch = max(1, int(np.ceil(len(x_all) / batch)))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        model.train()
        for epoch in range(epochs):
            order = rng.permutation(len(x_all))
            total = 0.0
            for s in range(steps_per_epoch):
                idx = torch.from_numpy(order[s * batch : (s + 1) * batch])
                x, y = x_all[idx], y_all[idx]
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
                y = torch.where(flip[:, None, None, None], y.flip(3), y)
                loss = torch.nn.functional.l1_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.item())
            if progress:
                progress(epoch, total / steps_per_epoch)
        model.eval()
        return model
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def apply_inverse(model: Any, inputs: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Run the trained inverse on crops -> uint8 crops."""
    torch = import_torch()
    with torch.no_grad():
        out = model(_to_tensor(torch, inputs)).clamp(0, 1).mul(255).round().byte().numpy()
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


def paste(image: NDArray[np.uint8], crop: NDArray[np.uint8], rect: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """The anonymised image with the attacked crop put back in place."""
    a, b, c, d = rect
    out = image.copy()
    out[b:d, a:c] = cv2.resize(crop, (c - a, d - b), interpolation=cv2.INTER_CUBIC)
    return out


def _split_summary(identities: list[str], train: list[int], test: list[int], seed: int) -> dict[str, Any]:
    return {
        "train_identities": sorted({identities[i] for i in train}),
        "heldout_identities": sorted({identities[i] for i in test}),
        "train_faces": len(train),
        "heldout_faces": len(test),
        "seed": seed,
    }


def _scored(rec: Recogniser, ref: Reference, img: NDArray[np.uint8], missed: bool) -> FaceResult:
    """``ref``'s face in ``img``: its distance to the original, and whether it is still found."""
    emb = rec.embed(img, [ref.face])[0]
    found = rec.detect(img)
    survived = bool(found) and bool((box_iou([ref.face.box], [f.box for f in found]) >= SURVIVAL_IOU).any())
    return FaceResult(float(distance(emb, ref.embedding)[0, 0]), missed, survived, {}, emb)


def _identity_scores(
    refs: Sequence[Reference], result: MethodResult, threshold: float, test: list[int]
) -> dict[str, Any]:
    """``summarise`` of the held-out faces, without its image-quality keys (the crops are
    scored in ``reconstruction``)."""
    out = summarise(refs, result, threshold, test)
    for key in ("psnr", "ssim", "ms_ssim", "psnr_outside", "ssim_outside", "ms_ssim_outside"):
        out.pop(key, None)
    return out


def _reconstruction(data: AttackData, test: list[int], attacked: NDArray[np.uint8]) -> dict[str, float]:
    """PSNR/SSIM of the anonymised and the attacked crops against the original crop, and the gains."""
    recon: dict[str, list[float]] = {"input_psnr": [], "input_ssim": [], "attack_psnr": [], "attack_ssim": []}
    for k, i in enumerate(test):
        tgt = data.targets[i]
        recon["input_psnr"].append(psnr(tgt, data.inputs[i]) or 0.0)
        recon["input_ssim"].append(ssim(tgt, data.inputs[i]) or 0.0)
        recon["attack_psnr"].append(psnr(tgt, attacked[k]) or 0.0)
        recon["attack_ssim"].append(ssim(tgt, attacked[k]) or 0.0)
    rc = {k: float(np.mean(v)) for k, v in recon.items()}
    rc["psnr_gain"] = rc["attack_psnr"] - rc["input_psnr"]
    rc["ssim_gain"] = rc["attack_ssim"] - rc["input_ssim"]
    return rc


def run_attack(
    refs: Sequence[Reference],
    product: ProductRunner,
    rec: Recogniser,
    spec: MethodSpec,
    *,
    epochs: int = 60,
    seed: int = 0,
    holdout: float = 0.4,
    threads: int = 1,
    progress: Callable[[int, float], None] | None = None,
    also: Sequence[Recogniser] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train on the train identities, attack the held-out ones, score before and after.

    Returns:
        ``(summary, examples)``. The JSON-ready summary has ``split``, ``training``,
        ``before`` and ``after`` (the ``eval identity`` scores of the held-out faces:
        verification leakage, rank-1 against every other original, detection survival)
        and ``reconstruction`` (PSNR/SSIM of the crops against the original crop, for the
        anonymised input and for the attack's output). ``examples`` holds the original,
        anonymised and attacked crops of each held-out face (for reports). ``also``: other
        recognisers that score the same anonymised and attacked images against their own
        embeddings of the originals (``also``: ``{name: {"before", "after"}}``).
    """
    identities = [r.identity for r in refs]
    train, test = split_identities(identities, holdout, seed)
    data = collect(refs, product, spec)
    t0 = time.perf_counter()
    model = train_inverse(
        data.inputs[train], data.targets[train], epochs=epochs, seed=seed, threads=threads, progress=progress
    )
    train_s = time.perf_counter() - t0
    attacked = apply_inverse(model, data.inputs[test])

    # Rows outside the held-out set are never probes; they only keep rows aligned.
    before = MethodResult(spec.key, [FaceResult(0.0, False, False, {}, r.embedding) for r in refs])
    after = MethodResult(f"{spec.key}+attack", list(before.faces))
    examples: list[dict[str, Any]] = []
    pasted = {i: paste(data.anonymised[i], attacked[k], data.rects[i]) for k, i in enumerate(test)}
    for k, i in enumerate(test):
        ref = refs[i]
        anon = data.anonymised[i]
        before.faces[i] = _scored(rec, ref, anon, data.missed[i])
        after.faces[i] = _scored(rec, ref, pasted[i], data.missed[i])
        examples.append(
            {
                "identity": ref.identity,
                "original": data.targets[i],
                "anonymised": data.inputs[i],
                "attacked": attacked[k],
            }
        )
    summary: dict[str, Any] = {
        "method": spec.key,
        "split": _split_summary(identities, train, test, seed),
        "training": {"epochs": epochs, "seconds": round(train_s, 1), "crop": CROP, "threads": threads},
        "before": _identity_scores(refs, before, rec.threshold, test),
        "after": _identity_scores(refs, after, rec.threshold, test),
        "reconstruction": _reconstruction(data, test, attacked),
    }
    if also:
        summary["also"] = {r.name: _rescored(r, refs, data, pasted, test) for r in also}
    return summary, examples


def _rescored(
    rec: Recogniser, refs: Sequence[Reference], data: AttackData, pasted: dict[int, NDArray[np.uint8]], test: list[int]
) -> dict[str, Any]:
    """The held-out faces before and after the attack, scored by another recogniser against
    its own embeddings of the originals (at the same faces)."""
    own = [dataclasses.replace(r, embedding=rec.embed(r.image, [r.face])[0]) for r in refs]
    before = MethodResult("before", [FaceResult(0.0, False, False, {}, r.embedding) for r in own])
    after = MethodResult("after", list(before.faces))
    for i in test:
        before.faces[i] = _scored(rec, own[i], data.anonymised[i], data.missed[i])
        after.faces[i] = _scored(rec, own[i], pasted[i], data.missed[i])
    return {
        "before": _identity_scores(own, before, rec.threshold, test),
        "after": _identity_scores(own, after, rec.threshold, test),
    }
