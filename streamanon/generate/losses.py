"""Training losses: hinge GAN, R1, masked L1, and identity repulsion through dlib's recogniser.

Identity repulsion uses the differentiable port of dlib's ResNet (``eval.dlib_torch``), the
recogniser ``streamanon eval`` measures privacy with: the generated face and the original
are cut into dlib's 150x150 chips by its differentiable chip extraction, embedded, and
the generator pays ``relu(threshold + margin - distance)``, i.e. for every face closer to
the original than dlib's same-person threshold (0.6) plus a margin. The original's
landmarks place both chips, so the loss compares the same region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from .geometry import DLIB5_FROM_68

if TYPE_CHECKING:
    from ..eval.dlib_torch import ChipDetails


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


class IdentityRepulsion(nn.Module):
    """``relu(threshold + margin - ||e(generated) - e(original)||)`` with dlib's recogniser.

    Args:
        margin: how far beyond dlib's same-person threshold the generator is pushed.
        device: torch device of the recogniser.

    Raises:
        ModelError: the dlib model file is missing or malformed.
    """

    def __init__(self, margin: float = 0.1, device: str = "cpu") -> None:
        super().__init__()
        from ..eval.dlib_torch import THRESHOLD, load_dlib_resnet

        self.net = load_dlib_resnet(device=device)
        self.net.requires_grad_(False)
        self.target = THRESHOLD + margin

    @staticmethod
    def _details(landmarks: NDArray[np.float32]) -> list[ChipDetails]:
        from ..eval.dlib_torch import face_chip_details

        return [face_chip_details(lm[list(DLIB5_FROM_68)]) for lm in landmarks]

    def chips(self, images: Tensor, details: list[ChipDetails]) -> Tensor:
        """``(N, 3, S, S)`` in [0, 1] -> dlib's ``(N, 3, 150, 150)`` chips in 0..255."""
        from ..eval.dlib_torch import extract_image_chips_torch

        return torch.cat(
            [extract_image_chips_torch(img * 255, [d], quantize=False) for img, d in zip(images, details, strict=True)]
        )

    def distances(self, generated: Tensor, original: Tensor, landmarks: Tensor) -> Tensor:
        details = self._details(landmarks.detach().cpu().numpy())
        with torch.no_grad():
            e_orig = self.net(self.chips(original, details))
        e_gen = self.net(self.chips(generated, details))
        d: Tensor = (e_gen - e_orig).pow(2).sum(dim=1).add(1e-8).sqrt()
        return d

    def distances_pair(
        self, a: Tensor, b: Tensor, original: Tensor, landmarks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """dlib distances ``(a, original)``, ``(b, original)`` and ``(a, b)``; gradients flow
        into ``a`` and ``b`` (two generated faces of the same input with different latents)."""
        details = self._details(landmarks.detach().cpu().numpy())
        with torch.no_grad():
            e_orig = self.net(self.chips(original, details))
        e = self.net(self.chips(torch.cat([a, b]), details + details))
        ea, eb = e[: len(a)], e[len(a) :]

        def dist(x: Tensor, y: Tensor) -> Tensor:
            return (x - y).pow(2).sum(dim=1).add(1e-8).sqrt()

        return dist(ea, e_orig), dist(eb, e_orig), dist(ea, eb)

    def forward(self, generated: Tensor, original: Tensor, landmarks: Tensor) -> Tensor:
        return F.relu(self.target - self.distances(generated, original, landmarks)).mean()
