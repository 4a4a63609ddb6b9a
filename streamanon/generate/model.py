"""The generator (a style-modulated U-Net that inpaints the masked face of a chip) and its
PatchGAN discriminator, in PyTorch (the ``torch`` extra).

Design, after DeepPrivacy2's face model but small enough for a CPU to run per face:

* the input is the chip with the replaced region zeroed, the mask, and the 68 landmarks
  rasterised inside the network into one Gaussian heatmap per facial part (8 channels:
  cheaper than 68 and the same for every runtime, since the ONNX graph does it);
* a mapping MLP turns the latent ``z`` into ``w``, and every decoder convolution is
  followed by a per-channel scale and shift computed from ``w`` (FiLM-style style
  modulation: exports to plain ONNX ops, unlike per-sample modulated convolutions);
* the output is composited in the network (``mask * generated + (1 - mask) * chip``), so
  nothing outside the mask can change; the raw output is also returned for the context
  L1 loss, which keeps the generated region continuous with its surroundings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..anonymize.generator_chip import LANDMARK_GROUPS, SIZES


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture hyper-parameters (stored in every checkpoint)."""

    size: int = 64
    channels: int = 16  # first level's channels; doubled per level up to ``max_channels``
    max_channels: int = 256
    z_dim: int = 64
    w_dim: int = 128
    mapping_layers: int = 3
    res_blocks: int = 2  # style-modulated residual blocks at the 8x8 bottleneck
    d_channels: int = 32  # discriminator's first level

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size}")

    @property
    def levels(self) -> int:
        """Down-sampling steps from the chip to the 8x8 bottleneck."""
        return int(math.log2(self.size // 8))

    def level_channels(self, i: int) -> int:
        return int(min(self.channels * 2**i, self.max_channels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HEATMAP_CHANNELS = len(LANDMARK_GROUPS)
IN_CHANNELS = 3 + 1 + HEATMAP_CHANNELS


class LandmarkHeatmaps(nn.Module):
    """``(N, 68, 2)`` chip-pixel points -> ``(N, 8, S, S)`` Gaussian heatmaps (max per part)."""

    gx: Tensor
    gy: Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.sigma = max(1.0, size / 64)
        ax = torch.arange(size, dtype=torch.float32)
        self.register_buffer("gx", ax.view(1, 1, 1, size), persistent=False)
        self.register_buffer("gy", ax.view(1, 1, size, 1), persistent=False)

    def forward(self, landmarks: Tensor) -> Tensor:
        x = landmarks[:, :, 0, None, None]
        y = landmarks[:, :, 1, None, None]
        d2 = (self.gx - x) ** 2 + (self.gy - y) ** 2
        heat = torch.exp(d2 * (-0.5 / self.sigma**2))
        return torch.cat([heat[:, a:b].amax(dim=1, keepdim=True) for a, b in LANDMARK_GROUPS], dim=1)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


class Style(nn.Module):
    """Per-channel ``x * (1 + scale(w)) + shift(w)``, initialised to the identity."""

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        scale, shift = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        out: Tensor = x * (1 + scale) + shift
        return out


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.conv = _conv(cin, cout)
        self.style = Style(w_dim, cout)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return F.leaky_relu(self.style(self.conv(x), w), 0.2)


class ResBlock(nn.Module):
    def __init__(self, ch: int, w_dim: int) -> None:
        super().__init__()
        self.a = StyledConv(ch, ch, w_dim)
        self.b = StyledConv(ch, ch, w_dim)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        out: Tensor = (x + self.b(self.a(x, w), w)) * (1 / math.sqrt(2))
        return out


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a = _conv(cin, cout, 2)
        self.b = _conv(cout, cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.b(F.leaky_relu(self.a(x), 0.2)), 0.2)


class Up(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.a = StyledConv(cin, cout, w_dim)
        self.b = StyledConv(cout + skip, cout, w_dim)

    def forward(self, x: Tensor, skip: Tensor, w: Tensor) -> Tensor:
        x = self.a(F.interpolate(x, scale_factor=2.0, mode="nearest"), w)
        out: Tensor = self.b(torch.cat([x, skip], dim=1), w)
        return out


class Generator(nn.Module):
    """``(chip, mask, landmarks, z) -> (composited, raw)``.

    Args (forward):
        chip: ``(N, 3, S, S)`` RGB in [0, 1].
        mask: ``(N, 1, S, S)``, 1 where the face is replaced.
        landmarks: ``(N, 68, 2)`` chip pixels.
        z: ``(N, z_dim)`` latent code (standard normal).

    Returns:
        ``(N, 3, S, S)`` composited chip in [0, 1] and the raw generator output in [0, 1].
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.heatmaps = LandmarkHeatmaps(cfg.size)
        layers: list[nn.Module] = []
        d = cfg.z_dim
        for _ in range(cfg.mapping_layers):
            layers += [nn.Linear(d, cfg.w_dim), nn.LeakyReLU(0.2)]
            d = cfg.w_dim
        self.mapping = nn.Sequential(*layers)
        ch = [cfg.level_channels(i) for i in range(cfg.levels + 1)]
        self.stem = _conv(IN_CHANNELS, ch[0])
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1]) for i in range(cfg.levels))
        self.blocks = nn.ModuleList(ResBlock(ch[-1], cfg.w_dim) for _ in range(cfg.res_blocks))
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i], ch[i], cfg.w_dim) for i in reversed(range(cfg.levels)))
        self.to_rgb = nn.Conv2d(ch[0], 3, 1)

    def condition(self, chip: Tensor, mask: Tensor, landmarks: Tensor) -> Tensor:
        """The network's input channels: masked chip in [-1, 1], mask, heatmaps."""
        x = (chip * 2 - 1) * (1 - mask)
        return torch.cat([x, mask, self.heatmaps(landmarks)], dim=1)

    def forward(self, chip: Tensor, mask: Tensor, landmarks: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        w = self.mapping(z)
        x = F.leaky_relu(self.stem(self.condition(chip, mask, landmarks)), 0.2)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for block in self.blocks:
            x = block(x, w)
        for up in self.ups:
            x = up(x, skips.pop(), w)
        raw = torch.tanh(self.to_rgb(x)) * 0.5 + 0.5
        return mask * raw + (1 - mask) * chip, raw


class ExportWrapper(nn.Module):
    """The graph that is exported: composited chip only."""

    def __init__(self, gen: Generator) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, chip: Tensor, mask: Tensor, landmarks: Tensor, z: Tensor) -> Tensor:
        image: Tensor = self.gen(chip, mask, landmarks, z)[0]
        return image


class Discriminator(nn.Module):
    """PatchGAN: ``(image, mask, landmarks) -> (N, 1, S/8, S/8)`` real/fake logits per patch.

    Conditioned on the mask and the landmark heatmaps, so a face that ignores the
    landmarks (pose, expression) is as fake as a badly painted one. No normalisation
    layers: the R1 penalty regularises it.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.heatmaps = LandmarkHeatmaps(cfg.size)
        c = cfg.d_channels
        chans = [IN_CHANNELS, c, 2 * c, 4 * c, 8 * c]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 2 if i < 3 else 1
            layers += [nn.Conv2d(chans[i], chans[i + 1], 4 if stride == 2 else 3, stride, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(chans[-1], 1, 3, 1, 1)

    def forward(self, image: Tensor, mask: Tensor, landmarks: Tensor) -> Tensor:
        x = torch.cat([image * 2 - 1, mask, self.heatmaps(landmarks)], dim=1)
        out: Tensor = self.head(self.features(x))
        return out


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_face(gen: Generator) -> float:
    """Floating-point operations of one forward pass on one face (multiply-adds x 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    s, zd = gen.cfg.size, gen.cfg.z_dim
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        gen(torch.zeros(1, 3, s, s), torch.zeros(1, 1, s, s), torch.zeros(1, 68, 2), torch.zeros(1, zd))
    return float(counter.get_total_flops())
