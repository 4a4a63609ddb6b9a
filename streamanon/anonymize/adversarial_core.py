"""The PGD core of adversarial anonymisation: pure functions, no pipeline state.

Why a separate core: the anonymiser that plugs into the pipeline owns per-track state
(the warm-start delta of each track, resets at track start/end); this module only turns
"these pixels, this recogniser, this goal" into a bounded perturbation, so the same code
serves stills, video frames, benchmarks and tests.

The attack is L-infinity PGD / I-FGSM (Kurakin et al. 2016; Madry et al. 2018), as in
Pitas's I-FGVM de-identification: ``delta <- project(delta - step * sign(grad loss))``.

Units and contracts (all tensors float, on one device, in the recogniser's dtype):

* Pixels are RGB code values in ``[0, 255]`` (not ``[0, 1]``); ``epsilon`` and
  ``step_size`` are in the same units, i.e. "/255" (``epsilon=8`` means 8/255).
* ``images`` ``(B, C, H, W)`` are what gets perturbed: aligned chips, or a frame / frame
  region whose faces ``embed`` cuts out itself (e.g. with
  ``streamanon.models.dlib_torch.extract_image_chips_torch``), so the perturbation lives
  in the pixels that are written.
* ``embed(x)`` maps perturbed ``images`` to ``(F, D)`` embeddings, one row per face
  (``F`` may differ from ``B``); the objective's references have ``F`` rows.
* The returned delta is integer-valued, ``|delta| <= floor(epsilon)`` elementwise and
  ``images + delta`` is integer-valued in ``[0, 255]`` (exactly, for integer-valued
  images: writing ``round(images + delta)`` as uint8 never moves a pixel by more than
  epsilon code values), and zero wherever ``mask`` is zero.
* Warm start: ``warm_start`` (e.g. the previous frame's delta of the same track) is
  projected into the current ball before the first step; with ``None`` PGD starts at a
  small seeded random draw (``PGDConfig.random_start``; 0 = exactly zero).

Robustness to the output encoder comes from expectation over transformations (Athalye
et al. 2018): each step's gradient is taken through randomly drawn, differentiable
approximations of what the encoder does -- 8x8 DCT quantisation with JPEG tables and
4:2:0 chroma (straight-through rounding), a small down/up resize, additive noise.

torch is the optional ``[torch]`` extra; it is imported by the functions that use it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, import_extra

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "EOTConfig",
    "KAnonymity",
    "Objective",
    "PGDConfig",
    "PGDResult",
    "Targeted",
    "Untargeted",
    "eot_transform",
    "h264_approx",
    "jpeg_approx",
    "pgd",
    "project",
    "quantize_delta",
    "resize_down_up",
]

Embed = Callable[["torch.Tensor"], "torch.Tensor"]


def _need_torch() -> None:
    import_extra("torch", "torch")


# -- objectives ------------------------------------------------------------------------


class Objective(Protocol):
    """What PGD minimises: a per-face loss and a per-face "goal reached" test."""

    def loss(self, emb: torch.Tensor) -> torch.Tensor:
        """``(F, D)`` embeddings -> ``(F,)`` losses (lower is better for the attacker)."""
        ...

    def satisfied(self, emb: torch.Tensor) -> torch.Tensor:
        """``(F, D)`` embeddings -> ``(F,)`` bool: the face meets the objective."""
        ...


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Euclidean distance with a finite gradient at zero (the first step starts there).
    return ((a - b).pow(2).sum(-1) + 1e-12).sqrt()


@dataclass(frozen=True)
class Untargeted:
    """Move each face's embedding away from its original one.

    Attributes:
        reference: ``(F, D)`` embeddings of the unperturbed faces.
        threshold: "same person" distance (dlib: 0.6); ``satisfied`` means beyond it.
        target: if set, stop pushing a face once its distance exceeds ``target``
            (hinge); ``None`` maximises the distance for the whole budget.
    """

    reference: torch.Tensor
    threshold: float = 0.6
    target: float | None = None

    def loss(self, emb: torch.Tensor) -> torch.Tensor:
        d = _dist(emb, self.reference)
        return (self.target - d).clamp(min=0) if self.target is not None else -d

    def satisfied(self, emb: torch.Tensor) -> torch.Tensor:
        return _dist(emb, self.reference) > self.threshold


@dataclass(frozen=True)
class Targeted:
    """Move each face's embedding towards a decoy (e.g. a per-track synthetic identity).

    Attributes:
        decoy: ``(F, D)`` target embeddings.
        threshold: ``satisfied`` means within this distance of the decoy.
    """

    decoy: torch.Tensor
    threshold: float = 0.6

    def loss(self, emb: torch.Tensor) -> torch.Tensor:
        return _dist(emb, self.decoy)

    def satisfied(self, emb: torch.Tensor) -> torch.Tensor:
        return _dist(emb, self.decoy) < self.threshold


@dataclass(frozen=True)
class KAnonymity:
    """The true identity ranks no better than k-th: at least ``k - 1`` other gallery
    identities are closer to the face than the true one (Pitas's k-anonymity attack).

    Attributes:
        gallery: ``(G, D)`` embeddings; several rows may belong to one identity.
        labels: ``(G,)`` integer identity of each gallery row.
        true_labels: ``(F,)`` identity of each face (must occur in ``labels``).
        k: anonymity set size, >= 2 (and at most the number of identities).
        margin: how much closer than the true identity the others must be; the loss
            is zero, and the face no longer pushed, once all ``k - 1`` are.

    An identity's distance is that of its nearest gallery row.
    """

    gallery: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor
    k: int = 5
    margin: float = 0.05
    _ids: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _need_torch()
        import torch

        ids = torch.unique(self.labels)
        if self.k < 2 or self.k > len(ids):
            raise ConfigError(f"invalid k={self.k}: expected 2..{len(ids)} (the gallery's identities)")
        if not bool(torch.isin(self.true_labels, ids).all()):
            raise ConfigError("KAnonymity: every true label must be an identity of the gallery")
        object.__setattr__(self, "_ids", ids)

    def _identity_distances(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        d = _dist(emb[:, None, :], self.gallery[None, :, :])  # (F, G)
        member = self.labels[None, :] == self._ids[:, None]  # (L, G)
        big = torch.finfo(d.dtype).max
        per_id = torch.where(member[None], d[:, None, :], big).amin(-1)  # (F, L)
        is_true = self._ids[None, :] == self.true_labels[:, None]  # (F, L)
        d_true = torch.where(is_true, per_id, big).amin(-1)
        others = torch.where(is_true, big, per_id)
        nearest = others.topk(self.k - 1, dim=-1, largest=False).values  # (F, k-1)
        return d_true, nearest

    def loss(self, emb: torch.Tensor) -> torch.Tensor:
        d_true, nearest = self._identity_distances(emb)
        return (nearest - d_true[:, None] + self.margin).clamp(min=0).mean(-1)

    def satisfied(self, emb: torch.Tensor) -> torch.Tensor:
        d_true, nearest = self._identity_distances(emb)
        return nearest[:, -1] < d_true


# -- expectation over transformations -----------------------------------------------------


@dataclass(frozen=True)
class EOTConfig:
    """Random, differentiable stand-ins for the output encoder, drawn anew every step.

    Attributes:
        p_jpeg: probability of 8x8 DCT quantisation (JPEG tables, 4:2:0 chroma) per sample.
        jpeg_quality: quality range drawn uniformly; 60-90 spans roughly the loss of
            H.264 at CRF 28-18 on faces.
        p_resize: probability of a down/up bilinear resize.
        resize_scale: scale range of the resize (drawn uniformly).
        noise_std: std of additive Gaussian noise in code values (0: none).
        samples: transformed copies whose gradients are averaged per step.
        p_h264: probability of an H.264-like 4x4 quantisation (``h264_approx``) per sample
            (drawn after the JPEG-like one, which it then replaces).
        h264_qp: quantisation parameter range drawn uniformly (CRF 18 codes faces at QP
            ~16-24 across I, P and B frames; CRF 28 at ~26-34).
    """

    p_jpeg: float = 0.5
    jpeg_quality: tuple[float, float] = (60.0, 90.0)
    p_resize: float = 0.5
    resize_scale: tuple[float, float] = (0.75, 1.0)
    noise_std: float = 0.0
    samples: int = 1
    p_h264: float = 0.0
    h264_qp: tuple[float, float] = (16.0, 26.0)

    def __post_init__(self) -> None:
        if not (0 <= self.p_jpeg <= 1 and 0 <= self.p_resize <= 1 and 0 <= self.p_h264 <= 1):
            raise ConfigError("EOT probabilities must be in [0, 1]")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ConfigError(f"invalid jpeg_quality range {self.jpeg_quality}: expected 1 <= lo <= hi <= 100")
        if not 0 < self.resize_scale[0] <= self.resize_scale[1] <= 1:
            raise ConfigError(f"invalid resize_scale range {self.resize_scale}: expected 0 < lo <= hi <= 1")
        if not 0 <= self.h264_qp[0] <= self.h264_qp[1] <= 51:
            raise ConfigError(f"invalid h264_qp range {self.h264_qp}: expected 0 <= lo <= hi <= 51")
        if self.noise_std < 0 or self.samples < 1:
            raise ConfigError("EOT noise_std must be >= 0 and samples >= 1")


# JPEG's example quantisation tables (ITU-T T.81, Annex K), row-major 8x8.
_Q_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_Q_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip


@functools.cache
def _dct_matrix(n: int = 8) -> list[list[float]]:
    rows = []
    for k in range(n):
        a = math.sqrt((1 if k == 0 else 2) / n)
        rows.append([a * math.cos(math.pi * (2 * i + 1) * k / (2 * n)) for i in range(n)])
    return rows


def _round_st(x: torch.Tensor) -> torch.Tensor:
    """Round forward, identity backward (the usual straight-through estimator)."""
    import torch

    return x + (torch.round(x) - x).detach()


def jpeg_approx(x: torch.Tensor, quality: float, chroma_420: bool = True) -> torch.Tensor:
    """Differentiable JPEG-like round trip of ``(B, 3, H, W)`` RGB 0..255 at ``quality`` (1-100).

    YCbCr (JFIF), optional 4:2:0 chroma (2x2 mean, nearest up), level shift, 8x8 DCT,
    division by the IJG-scaled Annex K tables, straight-through rounding, and back.
    Images are edge-padded to a multiple of 8 (16 with 4:2:0) and cropped back.
    """
    _need_torch()
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"jpeg_approx expects (B, 3, H, W), got {tuple(x.shape)}")
    q = min(max(float(quality), 1.0), 100.0)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    dev, dt = x.device, x.dtype
    tables = []
    for base in (_Q_LUMA, _Q_CHROMA):
        t = torch.tensor(base, dtype=dt, device=dev).view(8, 8)
        tables.append(torch.floor((t * scale + 50) / 100).clamp(min=1))
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    h, w = x.shape[2], x.shape[3]
    blk = 16 if chroma_420 else 8
    ph, pw = (-h) % blk, (-w) % blk
    ycc = torch.stack([y, cb, cr], 1)
    if ph or pw:
        ycc = F.pad(ycc, (0, pw, 0, ph), mode="replicate")
    if chroma_420:
        c = F.avg_pool2d(ycc[:, 1:], 2)
        ycc = torch.cat([ycc[:, :1], F.interpolate(c, scale_factor=2.0, mode="nearest")], 1)
    d = torch.tensor(_dct_matrix(), dtype=dt, device=dev)
    bsz, _, hh, ww = ycc.shape
    blocks = (ycc - 128).reshape(bsz, 3, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks @ d.T
    qt = torch.stack([tables[0], tables[1], tables[1]]).view(1, 3, 1, 1, 8, 8)
    coef = _round_st(coef / qt) * qt
    rec = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(bsz, 3, hh, ww) + 128
    rec = rec[:, :, :h, :w]
    y, cb, cr = rec[:, 0], rec[:, 1] - 128, rec[:, 2] - 128
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return out.clamp(0, 255)


def h264_approx(x: torch.Tensor, qp: float, rounding: float = 1.0 / 3.0) -> torch.Tensor:
    """Differentiable H.264-like intra round trip of ``(B, 3, H, W)`` RGB 0..255 at ``qp``.

    YCbCr (BT.601), 4:2:0 chroma (2x2 mean, nearest up), 4x4 orthonormal DCT (H.264's
    integer core transform with its scaling is this up to rounding), flat quantisation by
    H.264's step ``0.625 * 2 ** (qp / 6)`` with the reference encoder's dead-zone rounding
    offset (``rounding``: 1/3 intra, 1/6 inter; 1/2 is plain rounding), straight-through
    in the backward pass. No prediction: the residual an encoder codes is smaller, so this
    is harsher on a static face and milder on a moving one.
    """
    _need_torch()
    import torch
    import torch.nn.functional as F

    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"h264_approx expects (B, 3, H, W), got {tuple(x.shape)}")
    step = 0.625 * 2.0 ** (float(qp) / 6.0)
    dev, dt = x.device, x.dtype
    d = torch.tensor(_dct_matrix(4), dtype=dt, device=dev)

    def quant(plane: torch.Tensor) -> torch.Tensor:  # (B, C, h, w), h and w multiples of 4
        bsz, ch, hh, ww = plane.shape
        blocks = (plane - 128).reshape(bsz, ch, hh // 4, 4, ww // 4, 4).permute(0, 1, 2, 4, 3, 5)
        coef = d @ blocks @ d.T
        c = coef / step
        q = torch.sign(c) * torch.floor(c.abs() + rounding)
        coef = (c + (q - c).detach()) * step
        out: torch.Tensor = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(bsz, ch, hh, ww) + 128
        return out

    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    h, w = x.shape[2], x.shape[3]
    ph, pw = (-h) % 8, (-w) % 8
    ycc = torch.stack([y, cb, cr], 1)
    if ph or pw:
        ycc = F.pad(ycc, (0, pw, 0, ph), mode="replicate")
    luma = quant(ycc[:, :1])
    chroma = F.interpolate(quant(F.avg_pool2d(ycc[:, 1:], 2)), scale_factor=2.0, mode="nearest")
    rec = torch.cat([luma, chroma], 1)[:, :, :h, :w]
    y, cb, cr = rec[:, 0], rec[:, 1] - 128, rec[:, 2] - 128
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return out.clamp(0, 255)


def resize_down_up(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Shrink ``(B, C, H, W)`` by ``scale`` (antialiased bilinear) and enlarge back: the
    detail a resolution change or a soft encoder loses."""
    _need_torch()
    import torch.nn.functional as F

    h, w = int(x.shape[2]), int(x.shape[3])
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    if (sh, sw) == (h, w):
        return x
    small = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def eot_transform(x: torch.Tensor, cfg: EOTConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random draw of ``cfg``'s transformations applied to ``x`` (differentiably)."""
    _need_torch()
    import torch

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    if cfg.p_resize > 0 and float(torch.rand((), generator=generator)) < cfg.p_resize:
        x = resize_down_up(x, uniform(*cfg.resize_scale))
    if cfg.p_h264 > 0 and float(torch.rand((), generator=generator)) < cfg.p_h264:
        x = h264_approx(x, uniform(*cfg.h264_qp))
    elif cfg.p_jpeg > 0 and float(torch.rand((), generator=generator)) < cfg.p_jpeg:
        x = jpeg_approx(x, uniform(*cfg.jpeg_quality))
    if cfg.noise_std > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = (x + cfg.noise_std * noise).clamp(0, 255)
    return x


# -- projection ------------------------------------------------------------------------


def project(
    images: torch.Tensor, delta: torch.Tensor, epsilon: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``delta`` clipped into the L-inf ball of radius ``epsilon``, into ``[0, 255]`` around
    ``images``, and to zero where ``mask`` (broadcastable to ``images``) is zero."""
    d = delta.clamp(-epsilon, epsilon)
    d = (images + d).clamp(0, 255) - images
    if mask is not None:
        d = d * (mask != 0).to(d.dtype)
    return d


def quantize_delta(
    images: torch.Tensor, delta: torch.Tensor, epsilon: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The integer image nearest ``images + delta`` inside the ball, minus ``images``.

    ``images + result`` is integer-valued in ``[ceil(images - eps), floor(images + eps)]``
    intersected with ``[0, 255]``, so for integer-valued images no pixel moves by more
    than ``floor(epsilon)`` code values; pixels outside ``mask`` are left as they are
    (result 0). Rounding, not the float delta, is what the written uint8 frame holds.
    """
    _need_torch()
    import torch

    lo = torch.ceil((images - epsilon).clamp(min=0))
    hi = torch.floor((images + epsilon).clamp(max=255))
    adv = torch.minimum(torch.maximum(torch.round(images + delta), lo), hi)
    d = adv - images
    if mask is not None:
        d = torch.where(mask != 0, d, torch.zeros_like(d))
    return d


# -- PGD ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PGDConfig:
    """L-inf PGD settings.

    Attributes:
        epsilon: L-inf bound in code values (/255 units), >= 1.
        steps: gradient steps (1-3 a frame suffice with a warm start; 10+ from zero).
        step_size: per-step move in code values; ``None``: from a cold start
            ``2.5 * epsilon / steps`` (Madry et al.'s rule: 2 for epsilon 8 and 10
            steps), from a warm start ``epsilon / 4`` (a refinement: a full-epsilon
            FGSM step would throw the carried perturbation away); at least 1.
        random_start: without a warm start, begin at a uniform draw of this amplitude
            (code values, capped at epsilon); 0 starts at zero. The untargeted loss has
            no gradient at the unperturbed face itself (its distance is at a minimum
            there), so it needs a nonzero start; 1 code value is invisible.
        eot: encoder-robustness transformations, or ``None`` for the plain gradient.
        seed: seed of the random draws (EOT, random start); ``None``: torch's global RNG.
        scale: resolution divisor of the perturbation: PGD optimises a delta of
            ``ceil(H / scale) x ceil(W / scale)`` that is bilinearly enlarged to the image
            (1: every pixel free). A smooth perturbation is what a video encoder keeps
            (its quantisation removes high frequencies first) and costs less SSIM.
    """

    epsilon: float = 8.0
    steps: int = 10
    step_size: float | None = None
    random_start: float = 1.0
    eot: EOTConfig | None = None
    seed: int | None = 0
    scale: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.epsilon <= 255:
            raise ConfigError(f"invalid epsilon={self.epsilon!r}: expected 1..255 code values (/255)")
        if self.steps < 0:
            raise ConfigError(f"invalid steps={self.steps!r}: expected >= 0")
        if self.random_start < 0:
            raise ConfigError(f"invalid random_start={self.random_start!r}: expected >= 0")
        if self.step_size is not None and self.step_size <= 0:
            raise ConfigError(f"invalid step_size={self.step_size!r}: expected > 0")
        if not (isinstance(self.scale, int) and 1 <= self.scale <= 16):
            raise ConfigError(f"invalid scale={self.scale!r}: expected an integer in 1..16")

    def alpha(self, warm: bool = False) -> float:
        """The step size used from a cold (or a ``warm``) start."""
        if self.step_size is not None:
            return self.step_size
        if warm:
            return max(1.0, self.epsilon / 4)
        return max(1.0, 2.5 * self.epsilon / max(self.steps, 1))


@dataclass(frozen=True)
class PGDResult:
    """Outcome of ``pgd``.

    Attributes:
        delta: ``(B, C, H, W)`` integer-valued perturbation (see ``quantize_delta``);
            keep it per track as the next frame's ``warm_start``.
        adversarial: ``images + delta`` (integer-valued, in [0, 255]).
        embeddings: ``(F, D)`` embeddings of ``adversarial`` (no EOT).
        loss: ``(F,)`` objective loss of ``adversarial``.
        satisfied: ``(F,)`` bool, the objective's goal on ``adversarial``.
        steps: gradient steps taken.
    """

    delta: torch.Tensor
    adversarial: torch.Tensor
    embeddings: torch.Tensor
    loss: torch.Tensor
    satisfied: torch.Tensor
    steps: int


def pgd(
    images: torch.Tensor,
    embed: Embed,
    objective: Objective,
    config: PGDConfig | None = None,
    warm_start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> PGDResult:
    """L-inf PGD on ``images`` (all faces of one frame at once) against ``embed``.

    Args:
        images: ``(B, C, H, W)`` code values in [0, 255] (integer-valued for the exact
            bound); not modified.
        embed: perturbed images -> ``(F, D)`` embeddings, differentiable; e.g. the dlib
            port (``load_dlib_resnet``) on chips, or chip extraction + the port on a frame.
            Called in whatever grad mode ``pgd`` needs; the model should be in eval mode.
        objective: ``Untargeted``, ``Targeted``, ``KAnonymity`` or any ``Objective``.
        config: ``PGDConfig()`` when omitted.
        warm_start: initial delta shaped like ``images`` (e.g. the track's previous
            delta), projected into this frame's ball; ``None``: ``config.random_start``.
        mask: where the perturbation may go (broadcastable to ``images``; nonzero = yes).

    Returns:
        ``PGDResult``; its delta obeys the bound of ``quantize_delta`` exactly.

    Raises:
        ConfigError: shapes do not match.
    """
    _need_torch()
    cfg = config or PGDConfig()
    _check_shapes(images, warm_start)
    images = images.detach()
    gen = _generator(cfg.seed)
    delta_of = _DeltaMap.build(images, cfg, warm_start, mask)
    param = delta_of.keep(_initial_param(images, cfg, delta_of, warm_start, gen))
    alpha = cfg.alpha(warm=warm_start is not None)
    for _ in range(cfg.steps):
        param = _step(param, images, embed, objective, cfg, delta_of, alpha, gen)
    return _result(images, param, embed, objective, cfg, delta_of, mask)


def _check_shapes(images: torch.Tensor, warm_start: torch.Tensor | None) -> None:
    if images.ndim != 4:
        raise ConfigError(f"pgd expects (B, C, H, W) images, got shape {tuple(images.shape)}")
    if warm_start is not None and warm_start.shape != images.shape:
        raise ConfigError(f"warm_start shape {tuple(warm_start.shape)} != images {tuple(images.shape)}")


def _generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``; ``None``: torch's global RNG."""
    if seed is None:
        return None
    import torch

    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@dataclass(frozen=True)
class _DeltaMap:
    """How pgd's optimised parameter becomes the delta on ``images``.

    The parameter lives at ``1/scale`` resolution. At scale > 1 a warm start is kept at
    full resolution (``base``; pooling it would blur away part of it every frame) and the
    steps add a smooth change on top of it."""

    images: torch.Tensor
    eps: float
    mask: torch.Tensor | None
    scale: int
    base: torch.Tensor | None

    @classmethod
    def build(
        cls, images: torch.Tensor, cfg: PGDConfig, warm_start: torch.Tensor | None, mask: torch.Tensor | None
    ) -> _DeltaMap:
        eps = float(cfg.epsilon)
        base = None
        if warm_start is not None and cfg.scale > 1:
            base = project(images, warm_start.detach().to(images.dtype), eps, mask)
        return cls(images, eps, mask, cfg.scale, base)

    @property
    def shape(self) -> tuple[int, ...]:
        """The parameter's shape: the delta at 1/scale resolution."""
        h, w = int(self.images.shape[2]), int(self.images.shape[3])
        return (*self.images.shape[:2], math.ceil(h / self.scale), math.ceil(w / self.scale))

    @property
    def projects(self) -> bool:
        """At full resolution the parameter is the delta itself: kept inside the ball, [0, 255] and the mask."""
        return self.scale == 1 and self.base is None

    def keep(self, param: torch.Tensor) -> torch.Tensor:
        """``param`` back inside its room: projected, or clamped to the step's room (from
        -eps to +eps, and back when it adds to a base)."""
        if self.projects:
            return project(self.images, param, self.eps, self.mask)
        limit = 2 * self.eps if self.base is not None else self.eps
        return param.clamp(-limit, limit)

    def full(self, p: torch.Tensor) -> torch.Tensor:
        """The parameter as a delta on ``images`` (enlarged, inside the ball and the mask)."""
        if self.scale > 1:
            import torch.nn.functional as F

            size = (int(self.images.shape[2]), int(self.images.shape[3]))
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        if self.base is not None:
            p = self.base + p
        return project(self.images, p, self.eps, self.mask)


def _initial_param(
    images: torch.Tensor,
    cfg: PGDConfig,
    delta_of: _DeltaMap,
    warm_start: torch.Tensor | None,
    gen: torch.Generator | None,
) -> torch.Tensor:
    """The parameter before the first step: zero on top of a base, the warm start itself,
    a seeded uniform draw of ``cfg.random_start``, or zero."""
    import torch

    if delta_of.base is not None:
        return torch.zeros(delta_of.shape, dtype=images.dtype, device=images.device)
    if warm_start is not None:
        return warm_start.detach().to(images.dtype)
    if cfg.random_start > 0:
        amp = min(cfg.random_start, delta_of.eps)
        return ((torch.rand(delta_of.shape, generator=gen, dtype=images.dtype) * 2 - 1) * amp).to(images.device)
    return torch.zeros(delta_of.shape, dtype=images.dtype, device=images.device)


def _step(
    param: torch.Tensor,
    images: torch.Tensor,
    embed: Embed,
    objective: Objective,
    cfg: PGDConfig,
    delta_of: _DeltaMap,
    alpha: float,
    gen: torch.Generator | None,
) -> torch.Tensor:
    """One signed-gradient step, the gradient summed over the EOT samples."""
    import torch

    param.requires_grad_(True)
    grad = torch.zeros_like(param)
    for _ in range(cfg.eot.samples if cfg.eot is not None else 1):
        x = images + delta_of.full(param)
        if cfg.eot is not None:
            x = eot_transform(x, cfg.eot, gen)
        loss = objective.loss(embed(x)).sum()
        (g,) = torch.autograd.grad(loss, param)
        grad += g
    with torch.no_grad():
        return delta_of.keep(param.detach() - alpha * grad.sign())


def _result(
    images: torch.Tensor,
    param: torch.Tensor,
    embed: Embed,
    objective: Objective,
    cfg: PGDConfig,
    delta_of: _DeltaMap,
    mask: torch.Tensor | None,
) -> PGDResult:
    """The final parameter as the exact-bound delta, judged without EOT."""
    import torch

    with torch.no_grad():
        delta = quantize_delta(images, delta_of.full(param), delta_of.eps, mask)
        adversarial = images + delta
        emb = embed(adversarial)
        loss = objective.loss(emb)
        ok = objective.satisfied(emb)
    log.debug("pgd: %d steps, eps %.1f, %d/%d faces satisfied", cfg.steps, delta_of.eps, int(ok.sum()), len(ok))
    return PGDResult(delta, adversarial, emb, loss, ok, cfg.steps)
