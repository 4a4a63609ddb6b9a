"""A small TensorFlow.js graph-model -> ONNX converter for the ops of inference CNNs.

Why our own: the ``tensorflowjs`` + ``tf2onnx`` route pulls all of TensorFlow (GBs) for a
graph that needs a dozen operators. A TF.js graph model is ``model.json`` (the TF
``GraphDef`` nodes as JSON in ``modelTopology.node``, plus a ``weightsManifest``) and
binary shards holding every ``Const`` (optionally float16- or uint8/16-quantised); each
node maps to one or a few ONNX nodes.

TF.js graphs are NHWC; ONNX convolutions are NCHW. The input is transposed once, every
4-D tensor then stays NCHW (constants feeding element-wise ops are re-laid out to match,
reductions and squeezes map their axes), and 4-D outputs are transposed back, so the
ONNX model has exactly the TF.js model's inputs and outputs (names without ``:0``).

Any operator, attribute or data type outside the supported set is a ``ModelError``
naming the node: a wrong conversion is never written silently.

    python -m streamanon.eval.tfjs_convert path/to/model.json out.onnx
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError, StreamanonError

log = logging.getLogger(__name__)

#: ONNX opset written: 13 keeps ReduceMean's axes an attribute and is read by ORT,
#: OpenVINO and TensorRT alike.
OPSET = 13
#: Bumped when the converter's output for the same input changes.
CONVERTER_VERSION = "1"

_NHWC_TO_NCHW = [0, 3, 1, 2]
_NCHW_TO_NHWC = [0, 2, 3, 1]
#: Where NHWC axis ``i`` of a 4-D tensor lives in the NCHW copy.
_AXIS_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}

_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
    "int64": np.int64,
}
_TF_DTYPES: dict[str, Any] = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}
_QUANT: dict[str, Any] = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}

UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu", "Identity": "Identity"}
BINARY = {
    "Add": "Add",
    "AddV2": "Add",
    "BiasAdd": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Minimum": "Min",
    "Maximum": "Max",
}
REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise ModelError("the onnx package is needed to convert models (pip install onnx)") from exc
    return onnx


# -- reading a TF.js graph model ---------------------------------------------------------
def model_json_path(model: str | Path) -> Path:
    """``model.json`` of a model folder, or the given JSON file itself."""
    p = Path(model)
    if p.is_dir():
        p = p / "model.json"
    if not p.is_file():
        raise ModelError(f"TF.js model not found: {p}")
    return p


def _dequantise(raw: bytes, offset: int, spec: Mapping[str, Any], where: str) -> tuple[NDArray[Any], int]:
    shape = [int(d) for d in spec.get("shape", [])]
    count = int(np.prod(shape)) if shape else 1
    q = spec.get("quantization")
    if q:
        qdt = _QUANT.get(q.get("dtype", ""))
        if qdt is None:
            raise ModelError(f"{where}: unsupported weight quantisation {q.get('dtype')!r}")
        size = count * np.dtype(qdt).itemsize
        if offset + size > len(raw):
            raise ModelError(f"{where}: weight shards end before weight {spec['name']!r}")
        stored = np.frombuffer(raw, qdt, count, offset)
        if qdt is np.float16:
            values: NDArray[Any] = stored.astype(np.float32)
        else:  # affine: value = q * scale + min
            values = stored.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
        target = _DTYPES.get(spec["dtype"], np.float32)
        return values.astype(target).reshape(shape), offset + size
    dt = _DTYPES.get(spec["dtype"])
    if dt is None:
        raise ModelError(f"{where}: unsupported weight dtype {spec['dtype']!r} of {spec['name']!r}")
    size = count * np.dtype(dt).itemsize
    if offset + size > len(raw):
        raise ModelError(f"{where}: weight shards end before weight {spec['name']!r}")
    return np.frombuffer(raw, dt, count, offset).copy().reshape(shape), offset + size


def load_weights(model_json: Path, manifest: Sequence[Mapping[str, Any]]) -> dict[str, NDArray[Any]]:
    """Every weight of the manifest, dequantised, by name.

    Each manifest group's shards are one byte stream holding its weights in order, as
    TF.js reads them.
    """
    out: dict[str, NDArray[Any]] = {}
    for group in manifest:
        chunks = []
        for rel in group["paths"]:
            shard = model_json.parent / rel
            if not shard.is_file():
                raise ModelError(f"weight shard missing: {shard} (listed in {model_json})")
            chunks.append(shard.read_bytes())
        raw = b"".join(chunks)
        offset = 0
        for spec in group["weights"]:
            out[spec["name"]], offset = _dequantise(raw, offset, spec, str(model_json))
        if offset != len(raw):
            raise ModelError(f"{model_json}: weight shards hold {len(raw)} bytes, the manifest describes {offset}")
    return out


def _inline_tensor(tensor: Mapping[str, Any], where: str) -> NDArray[Any]:
    """A ``Const`` value stored in the node itself (TensorProto as JSON)."""
    dt = _TF_DTYPES.get(tensor.get("dtype", ""))
    if dt is None:
        raise ModelError(f"{where}: unsupported constant dtype {tensor.get('dtype')!r}")
    shape = [int(d.get("size", 0)) for d in tensor.get("tensorShape", {}).get("dim", [])]
    count = int(np.prod(shape)) if shape else 1
    if "tensorContent" in tensor:
        arr = np.frombuffer(base64.b64decode(tensor["tensorContent"]), dt).copy()
    else:
        key = {np.float32: "floatVal", np.int32: "intVal", np.int64: "int64Val", np.bool_: "boolVal"}[dt]
        vals = tensor.get(key, [])
        arr = np.array(vals if vals else [0], dt)
        if arr.size == 1 and count != 1:
            arr = np.full(count, arr[0], dt)
    if arr.size != count:
        raise ModelError(f"{where}: constant holds {arr.size} values for shape {shape}")
    return arr.reshape(shape)


# -- conversion ---------------------------------------------------------------------------
@dataclass
class _Tensor:
    """A converted tensor: its ONNX name, rank and whether a 4-D NHWC tensor is held NCHW."""

    name: str
    rank: int | None
    nchw: bool = False


def _attr_list(node: Mapping[str, Any], key: str) -> list[int]:
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _attr_str(node: Mapping[str, Any], key: str, default: str = "") -> str:
    s = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(s).decode() if s else default


def _attr_bool(node: Mapping[str, Any], key: str) -> bool:
    return bool(node.get("attr", {}).get(key, {}).get("b", False))


def _attr_float(node: Mapping[str, Any], key: str, default: float) -> float:
    v = node.get("attr", {}).get(key, {}).get("f")
    return float(v) if v is not None else default


def _strip(ref: str) -> str:
    """Input reference -> producing node name (``^ctrl`` deps, ``:0`` suffixes)."""
    name = ref.lstrip("^")
    head, _, tail = name.rpartition(":")
    return head if head and tail.isdigit() else name


class _Converter:
    def __init__(self, model_json: Path) -> None:
        self.onnx = _import_onnx()
        self.path = model_json
        try:
            doc = json.loads(model_json.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read TF.js model {model_json}: {exc}") from exc
        topo = doc.get("modelTopology", {})
        if doc.get("format") not in (None, "graph-model") or "node" not in topo:
            raise ModelError(f"{model_json} is not a TF.js graph model (no modelTopology.node)")
        self.doc = doc
        self.nodes: list[dict[str, Any]] = list(topo["node"])
        self.weights = load_weights(model_json, doc.get("weightsManifest", []))
        self.consts: dict[str, NDArray[Any]] = {}
        self.tensors: dict[str, _Tensor] = {}
        self.onnx_nodes: list[Any] = []
        self.initializers: dict[str, Any] = {}
        self.inputs: list[Any] = []
        self._uid = 0

    # helpers --------------------------------------------------------------------------
    def where(self, node: Mapping[str, Any]) -> str:
        return f"{self.path}: node {node['name']!r} ({node['op']})"

    def fresh(self, base: str) -> str:
        self._uid += 1
        return f"{base}__{self._uid}"

    def emit(self, op: str, inputs: Sequence[str], base: str, **attrs: Any) -> str:
        out = self.fresh(base)
        self.onnx_nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def initializer(self, base: str, value: NDArray[Any]) -> str:
        name = self.fresh(base)
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name)
        return name

    def is_const(self, ref: str) -> bool:
        return _strip(ref) in self.consts

    def const(self, ref: str, node: Mapping[str, Any]) -> NDArray[Any]:
        name = _strip(ref)
        if name not in self.consts:
            raise ModelError(f"{self.where(node)}: input {ref!r} must be a constant")
        return self.consts[name]

    def tensor(self, ref: str, node: Mapping[str, Any]) -> _Tensor:
        name = _strip(ref)
        if name in self.tensors:
            return self.tensors[name]
        if name in self.consts:  # a constant used as a plain tensor
            value = self.consts[name]
            t = _Tensor(self.initializer(name, value), value.ndim)
            self.tensors[name] = t
            return t
        raise ModelError(f"{self.where(node)}: unknown input {ref!r}")

    def data_inputs(self, node: Mapping[str, Any]) -> list[str]:
        return [r for r in node.get("input", []) if not r.startswith("^")]

    def to_nhwc(self, t: _Tensor) -> _Tensor:
        if not t.nchw:
            return t
        return _Tensor(self.emit("Transpose", [t.name], "to_nhwc", perm=_NCHW_TO_NHWC), 4)

    def to_nchw(self, t: _Tensor) -> _Tensor:
        if t.nchw:
            return t
        if t.rank != 4:
            raise ModelError(f"{self.path}: cannot lay out a rank-{t.rank} tensor as NCHW")
        return _Tensor(self.emit("Transpose", [t.name], "to_nchw", perm=_NHWC_TO_NCHW), 4, True)

    def const_for(self, value: NDArray[Any], nchw: bool, base: str) -> str:
        """A constant operand of an element-wise op, re-laid out when the other is NCHW."""
        v = np.asarray(value)
        if nchw and v.ndim > 0:
            if v.ndim > 4:
                raise ModelError(f"{self.path}: constant {base!r} of rank {v.ndim} beside a 4-D tensor")
            v = v.reshape((1,) * (4 - v.ndim) + v.shape).transpose(_NHWC_TO_NCHW)
        return self.initializer(base, v)

    # ops ------------------------------------------------------------------------------
    def placeholder(self, node: Mapping[str, Any]) -> None:
        helper, tp = self.onnx.helper, self.onnx.TensorProto
        dims_raw = node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])
        dims: list[int | str] = []
        for i, d in enumerate(dims_raw):
            size = int(d.get("size", -1))
            dims.append(size if size >= 0 else ("batch" if i == 0 else f"{node['name']}_dim{i}"))
        dt = node.get("attr", {}).get("dtype", {}).get("type", "DT_FLOAT")
        if dt != "DT_FLOAT":
            raise ModelError(f"{self.where(node)}: only float inputs are supported, got {dt}")
        name = node["name"]
        self.inputs.append(helper.make_tensor_value_info(name, tp.FLOAT, dims if dims_raw else None))
        t = _Tensor(name, len(dims) if dims_raw else None)
        self.tensors[name] = self.to_nchw(t) if t.rank == 4 else t

    def conv(self, node: Mapping[str, Any], depthwise: bool, fused: bool) -> None:
        where = self.where(node)
        ins = self.data_inputs(node)
        if _attr_str(node, "data_format", "NHWC") != "NHWC":
            raise ModelError(f"{where}: only NHWC data_format is supported")
        x = self.to_nchw(self.tensor(ins[0], node))
        k = self.const(ins[1], node).astype(np.float32)  # HWIO, or HWCM for depthwise
        if k.ndim != 4:
            raise ModelError(f"{where}: expected a 4-D filter, got shape {k.shape}")
        kh, kw, cin, mult = k.shape
        if depthwise:
            w = k.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)  # TF output channel c*M+m
            group = cin
        else:
            w = k.transpose(3, 2, 0, 1)
            group = 1
        strides = _attr_list(node, "strides") or [1, 1, 1, 1]
        dil = _attr_list(node, "dilations") or [1, 1, 1, 1]
        attrs: dict[str, Any] = {
            "kernel_shape": [kh, kw],
            "strides": [strides[1], strides[2]],
            "dilations": [dil[1], dil[2]],
            "group": group,
        }
        padding = _attr_str(node, "padding", "VALID")
        if padding == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"  # TF puts the odd pixel at the end, as SAME_UPPER does
        elif padding == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
        elif padding == "EXPLICIT":
            p = _attr_list(node, "explicit_paddings")  # NHWC (before, after) pairs
            attrs["pads"] = [p[2], p[4], p[3], p[5]]
        else:
            raise ModelError(f"{where}: unsupported padding {padding!r}")
        operands = [x.name, self.initializer(f"{node['name']}/W", w)]
        ops = [
            base64.b64decode(s).decode() for s in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
        ]
        if fused and ops and ops[0] == "BiasAdd":
            operands.append(self.initializer(f"{node['name']}/B", self.const(ins[2], node).astype(np.float32).ravel()))
            ops = ops[1:]
        elif fused and ops and ops[0] not in ("Relu", "Relu6"):
            raise ModelError(f"{where}: unsupported fused ops {ops}")
        out = _Tensor(self.emit("Conv", operands, node["name"], **attrs), 4, True)
        self.tensors[node["name"]] = self.activations(out, ops, node, extra=ins[3:] if fused else [])

    def activations(
        self, t: _Tensor, ops: Sequence[str], node: Mapping[str, Any], extra: Sequence[str] = ()
    ) -> _Tensor:
        """The activation that a fused Conv/MatMul applies after its bias."""
        for op in ops:
            if op == "Relu":
                t = _Tensor(self.emit("Relu", [t.name], node["name"]), t.rank, t.nchw)
            elif op == "Relu6":
                t = self.clip(t, 0.0, 6.0, node["name"])
            elif op == "LeakyRelu":
                alpha = _attr_float(node, "leakyrelu_alpha", 0.2)
                t = _Tensor(self.emit("LeakyRelu", [t.name], node["name"], alpha=alpha), t.rank, t.nchw)
            elif op == "Prelu" and extra:
                slope = self.const_for(self.const(extra[0], node).astype(np.float32), t.nchw, f"{node['name']}/alpha")
                t = _Tensor(self.emit("PRelu", [t.name, slope], node["name"]), t.rank, t.nchw)
            else:
                raise ModelError(f"{self.where(node)}: unsupported fused op {op!r}")
        return t

    def clip(self, t: _Tensor, lo: float, hi: float, base: str) -> _Tensor:
        lo_n = self.initializer(f"{base}/lo", np.array(lo, np.float32))
        hi_n = self.initializer(f"{base}/hi", np.array(hi, np.float32))
        return _Tensor(self.emit("Clip", [t.name, lo_n, hi_n], base), t.rank, t.nchw)

    def matmul(self, node: Mapping[str, Any], fused: bool) -> None:
        where = self.where(node)
        ins = self.data_inputs(node)
        a = self.to_nhwc(self.tensor(ins[0], node))
        if a.rank not in (None, 2):
            raise ModelError(f"{where}: MatMul needs 2-D inputs")
        ta, tb = int(_attr_bool(node, "transpose_a")), int(_attr_bool(node, "transpose_b"))
        b = self.tensor(ins[1], node).name
        ops = [
            base64.b64decode(s).decode() for s in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
        ]
        operands = [a.name, b]
        if fused and ops and ops[0] == "BiasAdd":
            operands.append(self.initializer(f"{node['name']}/B", self.const(ins[2], node).astype(np.float32).ravel()))
            ops = ops[1:]
        out = _Tensor(self.emit("Gemm", operands, node["name"], transA=ta, transB=tb), 2)
        self.tensors[node["name"]] = self.activations(out, ops if fused else [], node, extra=ins[3:] if fused else [])

    def binary(self, node: Mapping[str, Any]) -> None:
        ins = self.data_inputs(node)
        if len(ins) != 2:
            raise ModelError(f"{self.where(node)}: expected two inputs")
        consts = [self.is_const(r) for r in ins]
        if all(consts):
            raise ModelError(f"{self.where(node)}: constant-only arithmetic is not folded by this converter")
        live = [self.tensor(r, node) for r, c in zip(ins, consts, strict=True) if not c]
        nchw = any(t.nchw for t in live)
        if nchw:
            live = [self.to_nchw(t) if t.rank == 4 else t for t in live]
            if any(not t.nchw for t in live):
                raise ModelError(f"{self.where(node)}: mixes a 4-D tensor with a lower-rank tensor")
        names, it = [], iter(live)
        for r, c in zip(ins, consts, strict=True):
            names.append(self.const_for(self.const(r, node), nchw, _strip(r)) if c else next(it).name)
        rank = max((t.rank or 0) for t in live)
        self.tensors[node["name"]] = _Tensor(self.emit(BINARY[node["op"]], names, node["name"]), rank, nchw)

    def reduce_axes(self, t: _Tensor, axes: Sequence[int], keep: bool, op: str, base: str) -> _Tensor:
        """Reduce NHWC ``axes`` of ``t``; without ``keep`` the result is plain (NHWC order)."""
        rank = t.rank or 0
        axes = sorted(a % rank for a in axes) if rank else list(axes)
        if not t.nchw:
            out = self.emit(op, [t.name], base, axes=list(axes), keepdims=int(keep))
            return _Tensor(out, rank if keep else rank - len(axes))
        mapped = sorted(_AXIS_TO_NCHW[a] for a in axes)
        out = self.emit(op, [t.name], base, axes=mapped, keepdims=int(keep))
        if keep:
            return _Tensor(out, 4, True)
        return self.plain_after_drop(out, axes, base)

    def plain_after_drop(self, name: str, nhwc_dropped: Sequence[int], base: str) -> _Tensor:
        """A tensor that was NCHW with some NHWC axes removed, put in NHWC axis order."""
        kept_nhwc = [a for a in range(4) if a not in nhwc_dropped]
        kept_nchw = sorted(kept_nhwc, key=lambda a: _AXIS_TO_NCHW[a])  # order present in ``name``
        perm = [kept_nchw.index(a) for a in kept_nhwc]
        if perm != sorted(perm):
            name = self.emit("Transpose", [name], base, perm=perm)
        return _Tensor(name, len(kept_nhwc))

    def convert_node(self, node: dict[str, Any]) -> None:
        op, name, where = node["op"], node["name"], self.where(node)
        ins = self.data_inputs(node)
        if op == "Const":
            self.constant(node)
        elif op == "Placeholder":
            self.placeholder(node)
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            self.conv(node, op == "DepthwiseConv2dNative", fused=False)
        elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            self.conv(node, op == "FusedDepthwiseConv2dNative", fused=True)
        elif op in ("MatMul", "_FusedMatMul"):
            self.matmul(node, fused=op == "_FusedMatMul")
        elif op in BINARY:
            self.binary(node)
        elif op in UNARY:
            t = self.tensor(ins[0], node)
            self.tensors[name] = _Tensor(self.emit(UNARY[op], [t.name], name), t.rank, t.nchw)
        elif op == "Relu6":
            self.tensors[name] = self.clip(self.tensor(ins[0], node), 0.0, 6.0, name)
        elif op == "LeakyRelu":
            t = self.tensor(ins[0], node)
            alpha = _attr_float(node, "alpha", 0.2)
            self.tensors[name] = _Tensor(self.emit("LeakyRelu", [t.name], name, alpha=alpha), t.rank, t.nchw)
        elif op == "Softmax":
            t = self.tensor(ins[0], node)
            axis = 1 if t.nchw else -1
            self.tensors[name] = _Tensor(self.emit("Softmax", [t.name], name, axis=axis), t.rank, t.nchw)
        elif op in REDUCE:
            t = self.tensor(ins[0], node)
            axes = [int(a) for a in np.atleast_1d(self.const(ins[1], node))]
            self.tensors[name] = self.reduce_axes(t, axes, _attr_bool(node, "keep_dims"), REDUCE[op], name)
        elif op in ("AvgPool", "MaxPool"):
            self.pool(node)
        elif op == "Reshape":
            self.reshape(node)
        elif op == "Squeeze":
            self.squeeze(node)
        elif op == "ConcatV2":
            self.concat(node)
        else:
            raise ModelError(f"{where}: unsupported TF.js op {op!r} (supported: {', '.join(sorted(SUPPORTED_OPS))})")

    def constant(self, node: dict[str, Any]) -> None:
        """A weight of the model, or a value written in the graph."""
        name = node["name"]
        if name in self.weights:
            self.consts[name] = self.weights[name]
            return
        tensor = node.get("attr", {}).get("value", {}).get("tensor")
        if tensor is None:
            raise ModelError(f"{self.where(node)}: constant without a value or a weight")
        self.consts[name] = _inline_tensor(tensor, self.where(node))

    def reshape(self, node: dict[str, Any]) -> None:
        name, ins = node["name"], self.data_inputs(node)
        t = self.to_nhwc(self.tensor(ins[0], node))
        shape = self.const(ins[1], node).astype(np.int64).ravel()
        if (shape == 0).any():
            raise ModelError(f"{self.where(node)}: zero-sized Reshape dimensions are not supported")
        out = self.emit("Reshape", [t.name, self.initializer(f"{name}/shape", shape)], name)
        self.tensors[name] = _Tensor(out, int(shape.size))

    def squeeze(self, node: dict[str, Any]) -> None:
        name, ins = node["name"], self.data_inputs(node)
        t = self.tensor(ins[0], node)
        axes = _attr_list(node, "squeeze_dims")
        if not axes or t.rank is None:
            raise ModelError(f"{self.where(node)}: Squeeze needs explicit squeeze_dims and a known rank")
        axes = sorted(a % t.rank for a in axes)
        if t.nchw:
            mapped = np.array(sorted(_AXIS_TO_NCHW[a] for a in axes), np.int64)
            out = self.emit("Squeeze", [t.name, self.initializer(f"{name}/axes", mapped)], name)
            self.tensors[name] = self.plain_after_drop(out, axes, name)
        else:
            out = self.emit("Squeeze", [t.name, self.initializer(f"{name}/axes", np.array(axes, np.int64))], name)
            self.tensors[name] = _Tensor(out, t.rank - len(axes))

    def concat(self, node: dict[str, Any]) -> None:
        name, ins = node["name"], self.data_inputs(node)
        parts = [self.tensor(r, node) for r in ins[:-1]]
        axis = int(self.const(ins[-1], node))
        rank = parts[0].rank or 0
        if any(p.nchw for p in parts):
            parts = [self.to_nchw(p) for p in parts]
            axis = _AXIS_TO_NCHW[axis % 4]
        out = self.emit("Concat", [p.name for p in parts], name, axis=axis)
        self.tensors[name] = _Tensor(out, rank, parts[0].nchw)

    def pool(self, node: Mapping[str, Any]) -> None:
        where = self.where(node)
        if _attr_str(node, "data_format", "NHWC") != "NHWC":
            raise ModelError(f"{where}: only NHWC data_format is supported")
        t = self.to_nchw(self.tensor(self.data_inputs(node)[0], node))
        ksize, strides = _attr_list(node, "ksize"), _attr_list(node, "strides")
        attrs: dict[str, Any] = {"kernel_shape": [ksize[1], ksize[2]], "strides": [strides[1], strides[2]]}
        padding = _attr_str(node, "padding", "VALID")
        if padding == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"
        elif padding == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
        else:
            raise ModelError(f"{where}: unsupported padding {padding!r}")
        if node["op"] == "AvgPool":
            attrs["count_include_pad"] = 0  # TF averages over the valid pixels only
            out = self.emit("AveragePool", [t.name], node["name"], **attrs)
        else:
            out = self.emit("MaxPool", [t.name], node["name"], **attrs)
        self.tensors[node["name"]] = _Tensor(out, 4, True)

    # driver ---------------------------------------------------------------------------
    def output_names(self) -> list[str]:
        sig = self.doc.get("signature", {}).get("outputs")
        if sig:
            return [_strip(v.get("name", k)) for k, v in sig.items()]
        used = {_strip(r) for n in self.nodes for r in n.get("input", [])}
        return [n["name"] for n in self.nodes if n["name"] not in used and n["op"] not in ("Const", "Placeholder")]

    def run(self) -> Any:
        helper, tp = self.onnx.helper, self.onnx.TensorProto
        for node in self.nodes:
            self.convert_node(node)
        if not self.inputs:
            raise ModelError(f"{self.path}: the graph has no Placeholder input")
        outputs, sources = [], []
        for name in self.output_names():
            if name not in self.tensors:
                raise ModelError(f"{self.path}: output {name!r} is not computed by the graph")
            t = self.to_nhwc(self.tensors[name])
            sources.append(t.name)
            self.onnx_nodes.append(helper.make_node("Identity", [t.name], [name], name=f"{name}__out"))
            outputs.append(helper.make_tensor_value_info(name, tp.FLOAT, None))
        used = {i for n in self.onnx_nodes for i in n.input}
        inits = [v for k, v in self.initializers.items() if k in used]
        graph = helper.make_graph(self.onnx_nodes, self.path.stem, self.inputs, outputs, initializer=inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="streamanon.eval.tfjs_convert",
            producer_version=CONVERTER_VERSION,
        )
        model.ir_version = 8  # read by ORT >= 1.10 and by TensorRT/OpenVINO
        # Output shapes (the checker wants one) come from ONNX's own shape inference.
        inferred = self.onnx.shape_inference.infer_shapes(model)
        known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input)}
        for out, src in zip(model.graph.output, sources, strict=True):
            info = known.get(src)  # each output is an Identity of ``src``
            if info is None:
                raise ModelError(f"{self.path}: cannot infer the shape of output {out.name!r}")
            out.type.CopyFrom(info.type)
        return model


_OTHER_OPS = "Const Placeholder Conv2D DepthwiseConv2dNative _FusedConv2D FusedDepthwiseConv2dNative MatMul"
_OTHER_OPS += " _FusedMatMul Relu6 LeakyRelu Softmax AvgPool MaxPool Reshape Squeeze ConcatV2"
SUPPORTED_OPS = frozenset(_OTHER_OPS.split()) | set(BINARY) | set(UNARY) | set(REDUCE)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_graph_model(model_dir: str | Path, out_onnx: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Convert a TF.js graph model (folder with ``model.json``, or the JSON file) to ONNX.

    The ONNX records the sha256 of the JSON and of each weight shard in its metadata, so
    a user of the file can tell which source it was built from.

    Args:
        model_dir: the model folder or its JSON file.
        out_onnx: where to write the ONNX (parent folders are created; written atomically).
        metadata: extra ``key: value`` strings stored in the ONNX metadata.

    Returns:
        ``out_onnx`` as a ``Path``.

    Raises:
        ModelError: the model is missing, malformed or uses an unsupported op.
    """
    src = model_json_path(model_dir)
    conv = _Converter(src)
    model = conv.run()
    onnx = conv.onnx
    meta = {"source": src.name, f"sha256:{src.name}": sha256_file(src)}
    for group in conv.doc.get("weightsManifest", []):
        for rel in group["paths"]:
            meta[f"sha256:{rel}"] = sha256_file(src.parent / rel)
    meta.update(metadata or {})
    onnx.helper.set_model_props(model, meta)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"converted model of {src} fails the ONNX checker: {exc}") from exc
    out = Path(out_onnx)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(out)
    ops = sorted({n["op"] for n in conv.nodes})
    log.info("converted %s (%d nodes: %s) -> %s", src, len(conv.nodes), ", ".join(ops), out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamanon.eval.tfjs_convert MODEL_JSON OUT_ONNX``."""
    ap = argparse.ArgumentParser(prog="python -m streamanon.eval.tfjs_convert", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="TF.js graph model: a folder with model.json, or the JSON file")
    ap.add_argument("out", help="ONNX file to write")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra ONNX metadata")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--meta expects KEY=VALUE, got {item!r}")
        meta[key] = value
    try:
        out = convert_graph_model(args.model, args.out, metadata=meta)
    except StreamanonError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    log.info("wrote %s (sha256 %s)", out, sha256_file(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
