"""dlib's ``.dat`` serialisation of its face recognition ResNet, read into numpy arrays.

Split from ``dlib_torch`` (which builds the torch network from what this reads): the byte
reader (``_Stream``), the layer records (``ConvWeights``, ``DlibResNetWeights``), the
parser (``_parse`` and its steps) and the cached, checked file reading
(``read_dlib_resnet``). numpy only; a missing or malformed file is a ``ModelError`` naming
it, never a random network.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..backends.registry import resolve_model
from ..errors import ModelError

log = logging.getLogger(__name__)

__all__ = ["CHIP_SIZE", "MODEL_NAME", "ConvWeights", "DlibResNetWeights", "read_dlib_resnet"]

#: Registry name of the model file (``engines/registry.json``).
MODEL_NAME = "dlib-resnet-recognizer"
#: Side of the chips the network was trained on (the input layer's size, checked on reading).
CHIP_SIZE = 150

# -- dlib's binary serialisation -------------------------------------------------------


class _FormatError(Exception):
    """Internal: the byte stream is not what the architecture expects (becomes ModelError)."""


class _Stream:
    """Reads dlib's serialisation primitives from bytes.

    Integers: a control byte (bit 7 = negative, low 4 bits = byte count) then that many
    little-endian magnitude bytes. Floats/doubles: two integers, mantissa then exponent
    (value = mantissa * 2**exponent). Strings: an integer length then the bytes. Bools:
    ASCII '0'/'1'. Tensors: version 2, four integers (n, k, rows, cols), then raw
    little-endian float32.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _FormatError(f"unexpected end of file (needed {n} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise _FormatError(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def text(self) -> str:
        n = self.integer()
        if n > 256:
            raise _FormatError(f"implausible string length {n}")
        return self._take(n).decode("latin-1")

    def flag(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise _FormatError(f"bad bool byte {ch!r}")
        return ch == b"1"

    def tensor(self) -> NDArray[np.float32]:
        version = self.integer()
        if version != 2:
            raise _FormatError(f"tensor version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        if any(s < 0 for s in shape):
            raise _FormatError(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * count)
        return np.frombuffer(raw, "<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise _FormatError(f"alias_tensor version {version}, expected 1")
        n, k, r, c = (self.integer() for _ in range(4))
        return n, k, r, c

    def expect(self, what: str, *allowed: str) -> str:
        tag = self.text()
        if tag not in allowed:
            raise _FormatError(f"{what}: found layer tag {tag!r}, expected {' or '.join(map(repr, allowed))}")
        return tag


@dataclass(frozen=True)
class ConvWeights:
    """One convolution with the affine layer after it folded into its weight and bias."""

    weight: NDArray[np.float32]  # (out, in, kh, kw), cross-correlation as in dlib and torch
    bias: NDArray[np.float32]  # (out,)
    stride: int
    padding: int


@dataclass(frozen=True)
class DlibResNetWeights:
    """Everything the port needs from the model file.

    Attributes:
        mean_rgb: ``(3,)`` the input layer's per-channel means (subtracted, then / 256).
        convs: the 29 convolutions in forward order, each with its affine folded in.
        fc: ``(256, 128)`` the final fully connected matrix (``x @ fc``, no bias).
        down: for each of the 14 residual blocks, whether it halves the resolution.
    """

    mean_rgb: NDArray[np.float32]
    convs: tuple[ConvWeights, ...]
    fc: NDArray[np.float32]
    down: tuple[bool, ...]


#: (filters, downsamples) of the 14 residual blocks in forward order (dlib's alevel4..0).
_BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)


def _layers() -> list[tuple[str, dict[str, int]]]:
    """The layer list of ``anet_type`` in forward order, as dlib serialises it.

    ``tag``/``skip`` entries only write a version number; the others are ``add_layer``s
    that write their details after their subnetwork.
    """
    out: list[tuple[str, dict[str, int]]] = [
        ("con", {"filters": 32, "size": 7, "stride": 2}),
        ("affine", {}),
        ("relu", {}),
        ("max_pool", {"size": 3, "stride": 2}),
    ]
    for filters, down in _BLOCKS:
        out += [
            ("tag", {}),
            ("con", {"filters": filters, "size": 3, "stride": 2 if down else 1}),
            ("affine", {}),
            ("relu", {}),
            ("con", {"filters": filters, "size": 3, "stride": 1}),
            ("affine", {}),
        ]
        if down:
            out += [("tag", {}), ("skip", {}), ("avg_pool", {"size": 2, "stride": 2})]
        out += [("add_prev", {}), ("relu", {})]
    out += [("avg_pool", {"size": 0, "stride": 1}), ("fc", {"outputs": 128})]
    return out


def _read_con(s: _Stream, spec: dict[str, int]) -> tuple[NDArray[np.float32], NDArray[np.float32], int, int]:
    tag = s.expect("convolution", "con_4", "con_5", "con_6")
    params = s.tensor()
    filters, nr, nc, sy, sx, py, px = (s.integer() for _ in range(7))
    fshape, _ = s.alias(), s.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.real()
    use_bias = s.flag() if tag in ("con_5", "con_6") else True
    use_relu = s.flag() if tag == "con_6" else False
    size, stride = spec["size"], spec["stride"]
    pad = 0 if stride != 1 else size // 2
    if (filters, nr, nc, sy, sx, py, px) != (spec["filters"], size, size, stride, stride, pad, pad):
        raise _FormatError(
            f"convolution is {filters} {nr}x{nc}/{sy},{sx} pad {py},{px}; expected "
            f"{spec['filters']} {size}x{size}/{stride} pad {pad}"
        )
    if use_relu:
        raise _FormatError("convolution with a fused relu is not part of this architecture")
    nf = int(np.prod(fshape))
    if fshape[0] != filters or params.size not in (nf, nf + filters):
        raise _FormatError(f"convolution parameters of {params.size} values do not fit filters {fshape}")
    flat = params.reshape(-1)
    weight = flat[:nf].reshape(fshape)
    bias = flat[nf:] if (use_bias and params.size == nf + filters) else np.zeros(filters, np.float32)
    return weight, bias.astype(np.float32), stride, pad


def _read_affine(s: _Stream, channels: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(scale, shift) of an affine layer, or of a batch norm converted as dlib converts it."""
    tag = s.expect("affine", "affine_", "affine_2", "bn_con2")
    params = s.tensor().reshape(-1).astype(np.float64)
    gshape, bshape = s.alias(), s.alias()
    ng, nb = int(np.prod(gshape)), int(np.prod(bshape))
    if ng != channels or nb != channels or params.size != ng + nb:
        raise _FormatError(f"{tag} holds {params.size} parameters for {channels} channels")
    gamma, beta = params[:ng], params[ng:]
    if tag == "bn_con2":
        for _ in range(2):  # batch means, inverse stds (training state)
            s.tensor()
        running_mean = s.tensor().reshape(-1).astype(np.float64)
        running_var = s.tensor().reshape(-1).astype(np.float64)
        s.integer()  # num_updates
        s.integer()  # running_stats_window_size
        for _ in range(4):
            s.real()
        eps = s.real()
        if running_mean.size != channels or running_var.size != channels:
            raise _FormatError("batch norm running statistics do not match its channels")
        scale = gamma / np.sqrt(running_var + eps)
        return scale, beta - scale * running_mean
    mode = s.integer()
    if mode != 0:
        raise _FormatError(f"affine layer in mode {mode}, expected per-channel (0)")
    if tag == "affine_2" and s.flag():
        raise _FormatError("disabled affine layer")
    return gamma, beta


def _read_pool(s: _Stream, kind: str, spec: dict[str, int]) -> None:
    s.expect(kind, f"{kind}_2")
    nr, nc, sy, sx, py, px = (s.integer() for _ in range(6))
    size, stride = spec["size"], spec["stride"]
    pad = 0 if stride != 1 else size // 2
    if (nr, nc, sy, sx, py, px) != (size, size, stride, stride, pad, pad):
        raise _FormatError(f"{kind} is {nr}x{nc}/{sy} pad {py}; expected {size}x{size}/{stride} pad {pad}")


def _read_fc(s: _Stream, outputs: int) -> NDArray[np.float32]:
    tag = s.expect("fully connected", "fc_2", "fc_3")
    n_out, n_in = s.integer(), s.integer()
    params = s.tensor()
    wshape, _ = s.alias(), s.alias()
    bias_mode = s.integer()
    for _ in range(4):
        s.real()
    if tag == "fc_3":
        s.flag()
    if n_out != outputs or n_in != 256 or bias_mode != 1 or params.size != n_in * n_out:
        raise _FormatError(f"fc is {n_in}->{n_out} (bias mode {bias_mode}); expected 256->{outputs} without bias")
    del wshape
    return params.reshape(n_in, n_out).astype(np.float32)


def _parse(data: bytes) -> DlibResNetWeights:
    s = _Stream(data)
    layers = _layers()
    versions = _read_versions(s, layers)
    mean = _read_input(s)
    convs, fc = _read_details(s, layers, versions)
    if fc is None or len(convs) != 29:
        raise _FormatError(f"found {len(convs)} convolutions, expected 29")
    if s.pos != len(data):
        raise _FormatError(f"{len(data) - s.pos} trailing bytes")
    return DlibResNetWeights(mean, tuple(convs), fc, tuple(d for _, d in _BLOCKS))


def _read_versions(s: _Stream, layers: list[tuple[str, dict[str, int]]]) -> list[int]:
    """The loss layer, then each layer's version (written output to input), input to output."""
    if s.integer() != 1:
        raise _FormatError("loss layer version is not 1")
    if s.expect("loss layer", "loss_metric_", "loss_metric_2") == "loss_metric_2":
        s.real()  # margin
        s.real()  # distance threshold
    versions: list[int] = []
    for i, (kind, _) in enumerate(reversed(layers)):
        v = s.integer()
        allowed = {1} if kind in ("tag", "skip") else ({2, 3} if i == len(layers) - 1 else {1, 2})
        if v not in allowed:
            raise _FormatError(f"{kind} layer (#{len(layers) - i}) has version {v}")
        versions.append(v)
    versions.reverse()
    return versions


def _read_input(s: _Stream) -> NDArray[np.float32]:
    """The input layer: its per-channel mean; the chip size must be dlib's."""
    s.expect("input layer", "input_rgb_image_sized")
    mean = np.array([s.real() for _ in range(3)], np.float32)
    nr, nc = s.integer(), s.integer()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise _FormatError(f"input is {nr}x{nc}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    return mean


_Con = tuple[NDArray[np.float32], NDArray[np.float32], int, int]


def _read_details(
    s: _Stream, layers: list[tuple[str, dict[str, int]]], versions: list[int]
) -> tuple[list[ConvWeights], NDArray[np.float32] | None]:
    """Each add_layer's details and its bookkeeping, input to output: the convolutions
    (each folded with the affine layer after it) and the final fully connected layer."""
    convs: list[ConvWeights] = []
    pending: _Con | None = None
    fc: NDArray[np.float32] | None = None
    for (kind, spec), version in zip(layers, versions, strict=True):
        if kind in ("tag", "skip"):
            continue
        if kind == "con":
            pending = _read_con(s, spec)
        elif kind == "affine":
            convs.append(_fold_affine(s, pending))
            pending = None
        elif kind == "relu":
            tag = s.expect("relu", "relu_", "relu_2")
            if tag == "relu_2" and s.flag():
                raise _FormatError("disabled relu layer")
        elif kind in ("max_pool", "avg_pool"):
            _read_pool(s, kind, spec)
        elif kind == "add_prev":
            s.expect("add_prev", "add_prev_")
        elif kind == "fc":
            fc = _read_fc(s, spec["outputs"])
        _skip_bookkeeping(s, version)
    return convs, fc


def _fold_affine(s: _Stream, pending: _Con | None) -> ConvWeights:
    """The affine layer (batch norm at inference) folded into the convolution before it."""
    if pending is None:
        raise _FormatError("affine layer without a convolution before it")
    w, b, stride, pad = pending
    scale, shift = _read_affine(s, w.shape[0])
    fw = (w.astype(np.float64) * scale[:, None, None, None]).astype(np.float32)
    fb = (b.astype(np.float64) * scale + shift).astype(np.float32)
    return ConvWeights(fw, fb, stride, pad)


def _skip_bookkeeping(s: _Stream, version: int) -> None:
    """A layer's training state, unused here: flags, gradients, cached output."""
    for _ in range(3):  # setup called, gradient stale, output disabled
        s.flag()
    s.tensor()  # x_grad
    s.tensor()  # cached output
    if version >= 2:
        s.tensor()  # params_grad / grad_final
    if version >= 3:
        s.integer()  # sample expansion factor


def _model_file(path: Path | str | None) -> Path:
    if path is not None:
        return Path(path)

    return resolve_model(MODEL_NAME)


@functools.lru_cache(maxsize=2)
def _read_cached(path: Path, mtime_ns: int, size: int) -> DlibResNetWeights:
    del mtime_ns, size  # cache key only: a replaced file is read again
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib model {path}: {exc.strerror or exc}") from exc
    try:
        weights = _parse(data)
    except (_FormatError, struct.error, ValueError, OverflowError) as exc:
        raise ModelError(f"{path} is not dlib's face recognition ResNet model: {exc}") from exc
    log.debug("read dlib ResNet from %s (%d bytes)", path, len(data))
    return weights


def read_dlib_resnet(path: Path | str | None = None) -> DlibResNetWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (default: the installed one).

    Raises:
        ModelError: the file is missing, unreadable, truncated, or holds another network.
    """
    p = _model_file(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ModelError(f"dlib model file missing: {p} (reinstall face_recognition_models)") from exc
    if not p.is_file():
        raise ModelError(f"dlib model path is not a file: {p}")
    return _read_cached(p.resolve(), st.st_mtime_ns, st.st_size)
