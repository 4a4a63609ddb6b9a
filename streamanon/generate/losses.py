"""Training losses: hinge GAN, R1, masked L1, identity repulsion and per-latent target identities
through dlib's recogniser.

Identity repulsion uses the differentiable port of dlib's ResNet (``models.dlib_torch``), the
recogniser ``streamanon eval`` measures privacy with: the generated face and the original
are cut into dlib's 150x150 chips by its differentiable chip extraction, embedded, and
the generator pays ``relu(threshold + margin - distance)``, i.e. for every face closer to
the original than dlib's same-person threshold (0.6) plus a margin. The original's
landmarks place both chips, so the loss compares the same region.

``IdentityTargets`` gives every latent a target identity: a fixed affine map from z into
dlib's embedding space, fitted to the spread of the training faces' embeddings (their
mean plus their principal components scaled by their standard deviations). Pulling the
generated face towards its latent's target makes z decide who the synthetic person is
(two latents: two people, one latent: one person in every frame), where an in-mask
reconstruction term alone lets the generator ignore z. Next to it the generated face is
pushed away from every training face (``bank``), so a target near a training person
does not paint that person.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from ..anonymize.generator_chip import DLIB5_FROM_68
from ..models.dlib_torch import THRESHOLD, extract_image_chips_torch, face_chip_details, load_dlib_resnet

if TYPE_CHECKING:
    from ..models.dlib_torch import ChipDetails


def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge(fake: Tensor) -> Tensor:
    return -fake.mean()


def r1_penalty(d_out: Tensor, real: Tensor) -> Tensor:
    """Mean squared gradient norm of D at real images (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(d_out.sum(), real, create_graph=True)
    return grad.pow(2).sum(dim=(1, 2, 3)).mean()


def masked_l1(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    """Mean absolute difference where ``weight`` (N, 1, H, W) is set."""
    return ((a - b).abs() * weight).sum() / (weight.sum() * a.shape[1]).clamp_min(1.0)


def lowpass_l1(a: Tensor, b: Tensor, weight: Tensor, pool: int) -> Tensor:
    """``masked_l1`` between ``pool`` x ``pool`` block means of ``a`` and ``b`` inside ``weight``.

    Each block compares the mean of its pixels where ``weight`` is set, so a block half
    outside the mask compares only its inside. It ties colour, illumination and coarse
    shape (pose) of the generated face to the original and leaves the details inside a
    block (the features that make an identity) free for the latent. ``pool`` 1 is
    ``masked_l1``.
    """
    if pool <= 1:
        return masked_l1(a, b, weight)
    w = F.avg_pool2d(weight, pool)
    pa = F.avg_pool2d(a * weight, pool) / w.clamp_min(1e-6)
    pb = F.avg_pool2d(b * weight, pool) / w.clamp_min(1e-6)
    return masked_l1(pa, pb, w)


def excess_tv(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Total variation of ``a`` inside ``mask`` beyond that of ``b`` (the real face), per face,
    ``relu``'d and averaged: high-frequency patterns (stripes a recogniser term can paint to
    move its embedding) cost, the detail a real face has is free."""

    def tv(x: Tensor) -> Tensor:
        mx = mask[..., :, 1:] * mask[..., :, :-1]
        my = mask[..., 1:, :] * mask[..., :-1, :]
        gx = ((x[..., :, 1:] - x[..., :, :-1]).abs() * mx).sum(dim=(1, 2, 3))
        gy = ((x[..., 1:, :] - x[..., :-1, :]).abs() * my).sum(dim=(1, 2, 3))
        n = (mx.sum(dim=(1, 2, 3)) + my.sum(dim=(1, 2, 3))).mul(x.shape[1]).clamp_min(1.0)
        return (gx + gy) / n

    return F.relu(tv(a) - tv(b)).mean()


def mode_seeking(a: Tensor, b: Tensor, za: Tensor, zb: Tensor, mask: Tensor, target: float) -> Tensor:
    """Bounded mode-seeking loss (Mao et al., CVPR 2019): per face, the mean absolute
    difference inside ``mask`` between two outputs for the same input, over the mean
    absolute difference of their latents, is pushed up to ``target`` and no further
    (``relu(target - ratio) / target``, in [0, 1]): beyond it the term stops acting, so
    it cannot blow the output up to noise."""
    m = mask.sum(dim=(1, 2, 3)).mul(a.shape[1]).clamp_min(1.0)
    img = ((a - b).abs() * mask).sum(dim=(1, 2, 3)) / m
    lat = (za - zb).abs().mean(dim=1).clamp_min(1e-6)
    return F.relu(target - img / lat).mean() / target


def distance(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Euclidean distance (dlib's metric), with a gradient at 0."""
    return (a - b).pow(2).sum(dim=1).add(1e-8).sqrt()


def nearest_distance(e: Tensor, bank: Tensor) -> Tensor:
    """For each row of ``e``, its distance to the nearest row of ``bank`` (differentiable in ``e``)."""
    d2 = (e.pow(2).sum(1, keepdim=True) - 2 * e @ bank.T + bank.pow(2).sum(1)[None]).clamp_min(0)
    return d2.min(dim=1).values.add(1e-8).sqrt()


class IdentityTargets:
    """A fixed map from latents to target identities in dlib's embedding space.

    ``target(z) = mean + z[:, :k] @ basis.T`` with ``basis`` the ``k`` leading principal
    directions of the training faces' embeddings, each scaled by its standard deviation
    (times ``scale``): standard-normal latents give targets spread like real faces, and
    two latents give targets as far apart as two faces of the training set tend to be.
    ``bank`` holds the training faces' embeddings for the repulsion from all of them.

    Args:
        mean: ``(128,)``.
        basis: ``(128, k)``, ``k`` <= the latent size.
        bank: ``(N, 128)``.
    """

    def __init__(self, mean: Tensor, basis: Tensor, bank: Tensor) -> None:
        if mean.shape != (basis.shape[0],) or bank.shape[1:] != mean.shape:
            raise ValueError(f"shapes do not fit: mean {tuple(mean.shape)}, basis {tuple(basis.shape)}")
        self.mean, self.basis, self.bank = mean, basis, bank

    @classmethod
    def fit(cls, embeddings: Tensor, z_dim: int, scale: float = 1.0) -> IdentityTargets:
        """Targets spread like ``embeddings`` ``(N, 128)`` over their ``min(z_dim, N - 1, 128)``
        leading components."""
        if len(embeddings) < 2:
            raise ValueError("need at least 2 embeddings to fit identity targets")
        e = embeddings.double()
        mean = e.mean(0)
        _, sv, vt = torch.linalg.svd(e - mean, full_matrices=False)
        k = min(z_dim, len(e) - 1, e.shape[1])
        std = sv[:k] / math.sqrt(len(e) - 1)
        basis = (vt[:k].T * std * scale).float()
        return cls(mean.float(), basis, embeddings.float())

    def target(self, z: Tensor) -> Tensor:
        k = self.basis.shape[1]
        out: Tensor = self.mean + z[:, :k] @ self.basis.T
        return out

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "basis": self.basis, "bank": self.bank}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> IdentityTargets:
        return cls(state["mean"], state["basis"], state["bank"])


class IdentityRepulsion(nn.Module):
    """dlib's recogniser for the training terms: descriptors of generated and original faces;
    the repulsions push distances above ``target`` (dlib's threshold + ``margin``).

    Args:
        margin: how far beyond dlib's same-person threshold the generator is pushed.
        device: torch device of the recogniser.

    Raises:
        ModelError: the dlib model file is missing or malformed.
    """

    def __init__(self, margin: float = 0.1, device: str = "cpu") -> None:
        super().__init__()
        self.net = load_dlib_resnet(device=device)
        self.net.requires_grad_(False)
        self.target = THRESHOLD + margin

    @staticmethod
    def _details(landmarks: NDArray[np.float32]) -> list[ChipDetails]:
        return [face_chip_details(lm[list(DLIB5_FROM_68)]) for lm in landmarks]

    def chips(self, images: Tensor, details: list[ChipDetails]) -> Tensor:
        """``(N, 3, S, S)`` in [0, 1] -> dlib's ``(N, 3, 150, 150)`` chips in 0..255."""
        return torch.cat(
            [extract_image_chips_torch(img * 255, [d], quantize=False) for img, d in zip(images, details, strict=True)]
        )

    def embeddings(self, generated: Tensor, original: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
        """dlib descriptors of the generated faces (with gradients) and of the originals
        (without), both on chips placed by the original's landmarks. ``generated`` may hold
        several faces per original (``r * len(original)`` rows: every original's face for the
        first latent, then for the second); the originals are embedded once and their
        descriptors repeated to match."""
        reps, rest = divmod(len(generated), max(len(original), 1))
        if rest or not reps:
            raise ValueError(f"{len(generated)} generated faces for {len(original)} originals")
        details = self._details(landmarks.detach().cpu().numpy())
        with torch.no_grad():
            e_orig = self.net(self.chips(original, details))
        return self.net(self.chips(generated, details * reps)), e_orig.repeat(reps, 1)

    @torch.no_grad()
    def embed_set(self, images: Tensor, landmarks: Tensor, batch: int = 32) -> Tensor:
        """dlib descriptors ``(N, 128)`` of real faces (no gradients), ``batch`` at a time."""
        out = []
        for i in range(0, len(images), batch):
            sl = slice(i, i + batch)
            out.append(self.net(self.chips(images[sl], self._details(landmarks[sl].cpu().numpy()))))
        return torch.cat(out) if out else torch.zeros(0, 128)
