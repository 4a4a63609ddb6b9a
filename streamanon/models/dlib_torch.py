"""dlib's ResNet face recogniser in PyTorch, and dlib's face-chip extraction, reproduced.

Why: the adversarial kernels need a recogniser with gradients, and the one the evaluation
trusts is dlib's ``dlib_face_recognition_resnet_model_v1`` (``eval identity`` scores with
it). This module builds from that model file -- dlib's own binary serialisation, read by
``dlib_weights`` -- a ``torch.nn.Module`` with the same 29 convolutions, and cuts the same
150x150 chips dlib's ``compute_face_descriptor`` cuts (``get_face_chip_details(shape, 150, 0.25)`` +
``extract_image_chips``), once in numpy (bit-faithful, for measuring) and once in torch
(differentiable, so a loss on the embedding reaches the frame's pixels).

The weights are read at run time from the installed ``face_recognition_models`` package
(registry entry ``dlib-resnet-recognizer``); nothing is copied into the project and a
missing or malformed file is a ``ModelError`` naming it, never a random network.

The network (dlib's ``anet_type`` of ``dnn_face_recognition_ex.cpp``), input to output::

    (x - mean_rgb) / 256            mean (122.782, 117.001, 104.298), read from the file
    con 32 7x7/2, affine, relu, max_pool 3x3/2
    3 x res(32) | res_down(64) 3 x res(64) | res_down(128) 2 x res(128)
    | res_down(256) 2 x res(256) | res_down(256)
    global average, fc 256 -> 128 (no bias)

``res(N)``: relu(x + aff(con3x3(relu(aff(con3x3(x)))))); ``res_down`` has a stride-2
first convolution without padding and a 2x2/2 average pool on the shortcut. dlib adds
tensors of unequal shape by zero-padding the smaller one (missing channels, rows and
columns at the end), which the port does too. Affine layers may be stored as batch norm
(``bn_con2``) and are folded, as dlib folds them, into a per-channel scale and shift.

torch is the optional ``[torch]`` extra; it is imported only by the functions that need
it. The reader and the numpy chip code need numpy only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, import_extra
from .dlib_weights import CHIP_SIZE, MODEL_NAME, DlibResNetWeights, read_dlib_resnet
from .recognizer import THRESHOLD, Face
from .store import shared

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "MODEL_NAME",
    "THRESHOLD",
    "ChipDetails",
    "DlibResNetWeights",
    "DlibTorchEmbedder",
    "extract_image_chips",
    "extract_image_chips_torch",
    "face_chip_details",
    "load_dlib_resnet",
    "read_dlib_resnet",
    "shared_dlib_resnet",
]

#: dlib's padding around the face (the chips' side, ``CHIP_SIZE``, is the network's input).
CHIP_PADDING = 0.25


# -- the network in torch ----------------------------------------------------------------


def _need_torch() -> None:
    import_extra("torch", "torch")


@functools.cache
def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the result has the larger size; missing entries count as zero."""
    import torch.nn.functional as F

    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


def residual_blocks(convs: Any, down: Sequence[bool], x: torch.Tensor) -> torch.Tensor:
    """dlib's residual blocks on ``x``: block ``k`` is ``convs[2k]``, ReLU, ``convs[2k + 1]``
    plus the shortcut (average-pooled where ``down[k]``), then ReLU. A slice of the
    network's ``convs[1:]`` (an ``nn.ModuleList`` or a list of layers) and ``down`` runs
    part of it (``eval.adversary`` cuts it)."""
    import torch.nn.functional as F

    for k, d in enumerate(down):
        y = convs[2 * k + 1](F.relu(convs[2 * k](x)))
        x = F.relu(add_padded(y, F.avg_pool2d(x, 2, 2) if d else x))
    return x


def _network_class() -> type[torch.nn.Module]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DlibResNet(nn.Module):
        """dlib's face ResNet: ``(N, 3, 150, 150)`` RGB code values (0..255) -> ``(N, 128)``."""

        def __init__(self, weights: DlibResNetWeights) -> None:
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(weights.mean_rgb.copy()).view(1, 3, 1, 1))
            self.convs = nn.ModuleList()
            for cw in weights.convs:
                out_c, in_c, k, _ = cw.weight.shape
                conv = nn.Conv2d(in_c, out_c, k, stride=cw.stride, padding=cw.padding, bias=True)
                conv.weight.data.copy_(torch.from_numpy(cw.weight))
                assert conv.bias is not None
                conv.bias.data.copy_(torch.from_numpy(cw.bias))
                conv.requires_grad_(False)
                self.convs.append(conv)
            self.register_buffer("fc", torch.from_numpy(weights.fc.copy()))
            self.down = weights.down
            self.eval()

        def forward(self, chips: torch.Tensor) -> torch.Tensor:
            mean: torch.Tensor = self.mean  # type: ignore[assignment]
            x = (chips - mean) / 256.0
            x = F.max_pool2d(F.relu(self.convs[0](x)), 3, 2)
            x = residual_blocks(self.convs[1:], self.down, x)
            fc: torch.Tensor = self.fc  # type: ignore[assignment]
            out: torch.Tensor = x.mean(dim=(2, 3)) @ fc
            return out

    return DlibResNet


def load_dlib_resnet(path: Path | str | None = None, device: str = "cpu") -> torch.nn.Module:
    """dlib's face recogniser as a frozen ``nn.Module`` in eval mode (default file: the installed one).

    Input ``(N, 3, 150, 150)`` float RGB in 0..255 (dlib chips, see ``extract_image_chips``),
    output ``(N, 128)`` float32 descriptors; two faces are the same person below
    ``THRESHOLD`` (0.6) Euclidean distance. Gradients flow to the input; the weights have
    ``requires_grad=False``.

    Raises:
        MissingDependencyError: torch is not installed.
        ModelError: the model file is missing or malformed.
    """
    _need_torch()
    weights = read_dlib_resnet(path)
    net = _network_class()(weights)
    return net.to(device)


def shared_dlib_resnet(device: str = "cpu") -> torch.nn.Module:
    """The process's ``load_dlib_resnet(None, device)`` (loaded once, ``models.store``).

    Frozen and in eval mode, so runs and feeds can share it; callers must not train it.
    """
    return shared("dlib-resnet-torch", (device,), lambda: load_dlib_resnet(None, device))


# -- dlib's chip geometry ----------------------------------------------------------------

#: dlib's 5-point chip template (fractions of the unpadded chip), in the order of its
#: ``shape_predictor_5_face_landmarks`` parts.
_TEMPLATE5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    np.float64,
)

Rect = tuple[float, float, float, float]


@dataclass(frozen=True)
class ChipDetails:
    """Where a chip is cut, as dlib's ``chip_details``: a rectangle (inclusive corners,
    ``left, top, right, bottom``) rotated by ``angle`` radians about its centre, sampled
    into ``rows x cols`` pixels."""

    rect: Rect
    angle: float
    rows: int = CHIP_SIZE
    cols: int = CHIP_SIZE

    @property
    def size(self) -> int:
        return self.rows * self.cols


def _similarity(src: NDArray[np.float64], dst: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Least-squares similarity ``dst ~ m @ src + t`` (Umeyama 1991), reflection-corrected
    the way dlib's ``find_similarity_transform`` does it."""
    n = len(src)
    mean_s, mean_d = src.mean(0), dst.mean(0)
    sigma_s = float(((src - mean_s) ** 2).sum() / n)
    cov = (dst - mean_d).T @ (src - mean_s) / n
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    det = float(np.linalg.det(cov))
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        if d[1] < d[0]:
            s[1, 1] = -1
        else:
            s[0, 0] = -1
    r = u @ s @ vt
    c = float(np.trace(np.diag(d) @ s) / sigma_s) if sigma_s != 0 else 1.0
    return c * r, mean_d - c * r @ mean_s


def chip_details_from_points(
    chip_points: NDArray[Any], image_points: NDArray[Any], rows: int = CHIP_SIZE, cols: int = CHIP_SIZE
) -> ChipDetails:
    """The chip whose ``chip_points`` (chip pixels) land on ``image_points`` (image pixels)
    under the best similarity transform: dlib's ``chip_details(from, to, dims)``."""
    m, t = _similarity(np.asarray(chip_points, np.float64), np.asarray(image_points, np.float64))
    p = m[:, 0]
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    cx, cy = m @ np.array([cols / 2.0, rows / 2.0]) + t
    w, h = cols * scale - 1, rows * scale - 1
    return ChipDetails((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), angle, rows, cols)


def face_chip_details(
    landmarks: NDArray[Any] | Face, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> ChipDetails:
    """dlib's ``get_face_chip_details(shape, size, padding)`` for its 5-point landmarks.

    ``landmarks``: ``(5, 2)`` points of ``shape_predictor_5_face_landmarks`` (dlib's parts
    are integer pixels; ``Face.landmarks`` from ``DlibRecogniser`` are those), or a ``Face``.

    Raises:
        ConfigError: not five points, or a negative padding / non-positive size.
    """
    pts = np.asarray(landmarks.landmarks if isinstance(landmarks, Face) else landmarks, np.float64)
    if pts.shape != (5, 2):
        raise ConfigError(f"face_chip_details needs dlib's 5 landmark points, got shape {pts.shape}")
    if padding < 0 or size <= 0:
        raise ConfigError(f"invalid chip size={size} / padding={padding}")
    template = (padding + _TEMPLATE5) / (2 * padding + 1) * size
    return chip_details_from_points(template, pts, size, size)


# Geometry helpers mirroring dlib's drectangle / pyramid_down<2> conventions.


def _rect_down(r: Rect) -> Rect:
    # pyramid_down<2>::point_down(p) = p / 2 - (1.25, 0.75)
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r: Rect) -> float:
    if r[1] > r[3] or r[0] > r[2]:
        return 0.0
    return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _center(r: Rect) -> tuple[float, float]:
    return ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0)


def _rotate(c: tuple[float, float], p: tuple[float, float], angle: float) -> tuple[float, float]:
    sa, ca = math.sin(angle), math.cos(angle)
    x, y = p[0] - c[0], p[1] - c[1]
    return (ca * x - sa * y + c[0], sa * x + ca * y + c[1])


def _lround(v: float) -> int:
    """C's ``std::lround``: halves away from zero (Python's ``round`` goes to even)."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@dataclass(frozen=True)
class ChipPlan:
    """How ``extract_image_chips`` samples: one crop of the image, a pyramid depth, and
    per chip the pyramid level (-1 = the crop itself) and the chip->level affine."""

    box: tuple[int, int, int, int]  # integer l, t, r, b (inclusive) of the crop
    depth: int
    levels: tuple[int, ...]
    maps: tuple[NDArray[np.float64], ...]  # (2, 3): level xy = m[:, :2] @ (c, r) + m[:, 2]


def chip_plan(height: int, width: int, details: Sequence[ChipDetails]) -> ChipPlan:
    # dlib's extract_image_chips: when a chip is much smaller than its source region, it
    # samples a level of a 2:1 Gaussian pyramid (bilinear alone would alias). The
    # pyramid is built once, on the union of the chips' regions grown by its borders.
    bl, bt, br, bb = 0, 0, -1, -1  # empty integer rectangle
    max_depth = 0
    for d in details:
        depth, grow = 0, 2.0
        down = _rect_down(d.rect)
        while _area(down) > d.size:
            down = _rect_down(down)
            depth += 1
            grow = grow * 2 + 2
        c = _center(d.rect)
        corners = [
            _rotate(c, p, d.angle)
            for p in ((d.rect[0], d.rect[1]), (d.rect[2], d.rect[1]), (d.rect[0], d.rect[3]), (d.rect[2], d.rect[3]))
        ]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        g = (
            max(min(xs) - grow, 0.0),
            max(min(ys) - grow, 0.0),
            min(max(xs) + grow, width - 1.0),
            min(max(ys) + grow, height - 1.0),
        )
        gi = tuple(_lround(v) for v in g)
        if gi[0] <= gi[2] and gi[1] <= gi[3]:
            if bl > br or bt > bb:
                bl, bt, br, bb = gi
            else:
                bl, bt, br, bb = min(bl, gi[0]), min(bt, gi[1]), max(br, gi[2]), max(bb, gi[3])
        max_depth = max(max_depth, depth)
    levels: list[int] = []
    maps: list[NDArray[np.float64]] = []
    for d in details:
        level = -1
        rect: Rect = (d.rect[0] - bl, d.rect[1] - bt, d.rect[2] - bl, d.rect[3] - bt)
        while _area(_rect_down(rect)) > d.size:
            level += 1
            rect = _rect_down(rect)
        c = _center(rect)
        tl = _rotate(c, (rect[0], rect[1]), d.angle)
        tr = _rotate(c, (rect[2], rect[1]), d.angle)
        blc = _rotate(c, (rect[0], rect[3]), d.angle)
        # The affine taking chip corners (0,0), (cols-1,0), (0,rows-1) to those points.
        m = np.array(
            [
                [(tr[0] - tl[0]) / (d.cols - 1), (blc[0] - tl[0]) / (d.rows - 1), tl[0]],
                [(tr[1] - tl[1]) / (d.cols - 1), (blc[1] - tl[1]) / (d.rows - 1), tl[1]],
            ]
        )
        levels.append(level)
        maps.append(m)
    return ChipPlan((bl, bt, br, bb), max_depth, tuple(levels), tuple(maps))


def _pyramid_down(img: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """dlib's ``pyramid_down<2>`` on RGB: 5x5 binomial filter, every other pixel, floor(/256)."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), np.uint8)
    a = img.astype(np.int32)
    ow, oh = (w - 3) // 2, (h - 3) // 2
    rows = np.zeros((h, ow, 3), np.int32)
    for j, kk in enumerate((1, 4, 6, 4, 1)):
        rows += kk * a[:, j : j + 2 * ow : 2]
    both = np.zeros((oh, ow, 3), np.int32)
    for i, kk in enumerate((1, 4, 6, 4, 1)):
        both += kk * rows[i : i + 2 * oh : 2]
    out: NDArray[np.uint8] = (both // 256).astype(np.uint8)
    return out


def _sample_points(m: NDArray[np.float64], rows: int, cols: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    cc, rr = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    return m[0, 0] * cc + m[0, 1] * rr + m[0, 2], m[1, 0] * cc + m[1, 1] * rr + m[1, 2]


def _bilinear_np(src: NDArray[np.uint8], m: NDArray[np.float64], rows: int, cols: int) -> NDArray[np.uint8]:
    h, w = src.shape[:2]
    x, y = _sample_points(m, rows, cols)
    left, top = np.floor(x), np.floor(y)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    li = np.where(ok, left, 0).astype(np.intp)
    ti = np.where(ok, top, 0).astype(np.intp)
    lr = (x - left)[..., None]
    tb = (y - top)[..., None]
    s = src.astype(np.float64)
    tl, tr = s[ti, li], s[ti, np.minimum(li + 1, w - 1)]
    bl, br = s[np.minimum(ti + 1, h - 1), li], s[np.minimum(ti + 1, h - 1), np.minimum(li + 1, w - 1)]
    v = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = np.where(ok[..., None], np.trunc(v), 0.0)  # static_cast<unsigned char>, black outside
    return out.astype(np.uint8)


def _rgb(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def extract_image_chips(image: NDArray[np.uint8], details: Sequence[ChipDetails]) -> NDArray[np.uint8]:
    """dlib's ``extract_image_chips(img, details)`` (bilinear) -> ``(N, rows, cols, 3)`` uint8.

    Pass all faces of one image together: like dlib, the pyramid is built on the union of
    their regions, and the result of one face can depend (by a code value) on the others.
    All chips must share one size.
    """
    image = _rgb(image)
    if not details:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    if len({(d.rows, d.cols) for d in details}) != 1:
        raise ConfigError("extract_image_chips: all chips must have the same size")
    plan = chip_plan(image.shape[0], image.shape[1], details)
    x0, y0, x1, y1 = plan.box
    crop = image[y0 : y1 + 1, x0 : x1 + 1]
    pyr = [crop]
    for _ in range(plan.depth):
        pyr.append(_pyramid_down(pyr[-1]))
    out = np.zeros((len(details), details[0].rows, details[0].cols, 3), np.uint8)
    for i, (d, level, m) in enumerate(zip(details, plan.levels, plan.maps, strict=True)):
        out[i] = _bilinear_np(pyr[level + 1], m, d.rows, d.cols)
    return out


def extract_image_chips_torch(
    image: torch.Tensor, details: Sequence[ChipDetails], quantize: bool = True
) -> torch.Tensor:
    """Differentiable ``extract_image_chips``: ``(3, H, W)`` float RGB 0..255 -> ``(N, 3, rows, cols)``.

    The same crop, pyramid and bilinear sampling as the numpy version, computed in float64
    on ``image``'s device. With ``quantize`` the two places dlib truncates to integers
    (pyramid levels, chip pixels) are floored with a straight-through gradient, so the
    forward values equal ``extract_image_chips`` on the uint8 image while the gradient is
    that of the exact linear sampling. Chips come back in ``image``'s dtype.
    """
    _need_torch()
    import torch
    import torch.nn.functional as F

    if image.ndim != 3 or image.shape[0] != 3:
        raise ConfigError(f"expected a (3, H, W) RGB tensor, got shape {tuple(image.shape)}")
    if not details:
        return image.new_zeros((0, 3, CHIP_SIZE, CHIP_SIZE))
    if len({(d.rows, d.cols) for d in details}) != 1:
        raise ConfigError("extract_image_chips_torch: all chips must have the same size")

    def floor_st(v: torch.Tensor) -> torch.Tensor:
        return v + (torch.floor(v) - v).detach() if quantize else v

    _, height, width = image.shape
    plan = chip_plan(int(height), int(width), details)
    x0, y0, x1, y1 = plan.box
    x = image.to(torch.float64)[:, y0 : y1 + 1, x0 : x1 + 1]
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64, device=image.device)
    kernel = (k1[:, None] * k1[None, :]).expand(3, 1, 5, 5)
    pyr = [x]
    for _ in range(plan.depth):
        cur = pyr[-1]
        if cur.shape[1] <= 8 or cur.shape[2] <= 8:
            pyr.append(cur.new_zeros((3, 0, 0)))
            continue
        down = F.conv2d(cur[None], kernel, stride=2, groups=3)[0] / 256.0
        pyr.append(floor_st(down))
    chips = [
        floor_st(_bilinear_torch(pyr[level + 1], m, d.rows, d.cols))
        for d, level, m in zip(details, plan.levels, plan.maps, strict=True)
    ]
    return torch.stack(chips).to(image.dtype)


def _bilinear_torch(src: torch.Tensor, m: NDArray[np.float64], rows: int, cols: int) -> torch.Tensor:
    """``_bilinear_np`` before truncation, differentiable in ``src`` ``(3, h, w)``; 0 outside."""
    import torch

    h, w = int(src.shape[1]), int(src.shape[2])
    xs, ys = _sample_points(m, rows, cols)
    left, top = np.floor(xs), np.floor(ys)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    if not ok.any():
        return src.new_zeros((3, rows, cols))
    li = np.where(ok, left, 0).astype(np.int64)
    ti = np.where(ok, top, 0).astype(np.int64)
    li1, ti1 = np.minimum(li + 1, w - 1), np.minimum(ti + 1, h - 1)
    flat = src.reshape(3, -1)

    def at(rr: NDArray[np.int64], cc: NDArray[np.int64]) -> torch.Tensor:
        idx = torch.from_numpy((rr * w + cc).reshape(-1)).to(src.device)
        return flat[:, idx].reshape(3, rows, cols)

    lr = torch.from_numpy(xs - left).to(src.device, src.dtype)
    tb = torch.from_numpy(ys - top).to(src.device, src.dtype)
    v = (1 - tb) * ((1 - lr) * at(ti, li) + lr * at(ti, li1)) + tb * ((1 - lr) * at(ti1, li) + lr * at(ti1, li1))
    return v * torch.from_numpy(ok).to(src.device, src.dtype)


# -- convenience: embed faces like DlibRecogniser.embed, with the port ------------------


class DlibTorchEmbedder:
    """``DlibRecogniser.embed`` with the torch port: same chips, same descriptors (to 1e-3).

    Args:
        path: model file (default: the installed ``face_recognition_models`` one).
        device: torch device of the network.
        batch: chips per forward pass (dlib uses 16).
    """

    name = "dlib-torch"
    threshold = THRESHOLD

    def __init__(self, path: Path | str | None = None, device: str = "cpu", batch: int = 16) -> None:
        if batch < 1:
            raise ConfigError(f"invalid batch={batch!r}: expected >= 1")
        self.net = load_dlib_resnet(path, device)
        self.device = device
        self.batch = batch

    def chips(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.uint8]:
        """dlib's 150x150 chips of ``faces`` in the RGB ``image`` (``(N, 150, 150, 3)``)."""
        return extract_image_chips(image, [face_chip_details(f) for f in faces])

    def embed_chips(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """``(N, 150, 150, 3)`` uint8 chips -> ``(N, 128)`` descriptors."""
        import torch

        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ConfigError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got shape {chips.shape}")
        out = np.zeros((len(chips), 128), np.float32)
        with torch.no_grad():
            for i in range(0, len(chips), self.batch):
                x = torch.from_numpy(np.ascontiguousarray(chips[i : i + self.batch].transpose(0, 3, 1, 2)))
                out[i : i + self.batch] = self.net(x.to(self.device, torch.float32)).cpu().numpy()
        return out

    def embed(self, image: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.float32]:
        """128-d vectors of ``faces`` in the RGB ``image``, aligned by the faces' landmarks."""
        if not faces:
            return np.zeros((0, 128), np.float32)
        return self.embed_chips(self.chips(image, faces))
