"""Export a trained generator checkpoint to ONNX (dynamic batch) and check it against PyTorch.

The ONNX graph is ``ExportWrapper``: inputs ``chip`` (N, 3, S, S) RGB in [0, 1],
``mask`` (N, 1, S, S), ``landmarks`` (N, 68, 2) chip pixels, ``z`` (N, Z); output
``image`` (N, 3, S, S) in [0, 1], already composited (outside the mask it is the input).
Heatmap rasterisation is part of the graph, so every runtime gets the same conditioning.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..anonymize.generator_chip import CHIP_CENTRE, CHIP_ZOOM, template_mask
from ..backends.onnxruntime import OrtBackend
from ..errors import SinkError
from .model import ExportWrapper, Generator
from .train import load_generator

log = logging.getLogger(__name__)

INPUT_NAMES = ("chip", "mask", "landmarks", "z")
OUTPUT_NAME = "image"
OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size: int
    z_dim: int
    max_abs_diff: float  # ONNX Runtime vs PyTorch on random inputs
    bytes: int


def example_inputs(size: int, z_dim: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random but face-like inputs: random chips, the template mask, landmarks scattered
    around the face region, standard-normal latents."""
    rng = np.random.default_rng(seed)
    mask = np.broadcast_to(template_mask(size)[None, None], (batch, 1, size, size)).astype(np.float32)
    lms = rng.uniform(0.3 * size, 0.7 * size, (batch, 68, 2)).astype(np.float32)
    return {
        "chip": rng.random((batch, 3, size, size), dtype=np.float32),
        "mask": np.ascontiguousarray(mask),
        "landmarks": lms,
        "z": rng.standard_normal((batch, z_dim), dtype=np.float32),
    }


def _export(gen: Generator, path: Path) -> None:
    s, zd = gen.cfg.size, gen.cfg.z_dim
    args = tuple(torch.from_numpy(v) for v in example_inputs(s, zd, 2).values())
    axes = {n: {0: "batch"} for n in (*INPUT_NAMES, OUTPUT_NAME)}
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript (not a dependency); it still exports this plain graph exactly
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ExportWrapper(gen).eval(),
            args,
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def _add_metadata(path: Path, gen: Generator, steps: int) -> None:
    import onnx

    model = onnx.load(str(path))
    meta = {
        "streamanon.model": "generator",
        "streamanon.size": str(gen.cfg.size),
        "streamanon.z_dim": str(gen.cfg.z_dim),
        "streamanon.chip_zoom": str(CHIP_ZOOM),
        "streamanon.chip_centre": f"{CHIP_CENTRE[0]},{CHIP_CENTRE[1]}",
        "streamanon.train_steps": str(steps),
    }
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_against_torch(gen: Generator, path: Path, batch: int = 3, seed: int = 1) -> float:
    """Max absolute difference of ONNX Runtime's output and PyTorch's on random inputs
    (a batch size other than the export's, so the dynamic axis is exercised)."""
    inputs = example_inputs(gen.cfg.size, gen.cfg.z_dim, batch, seed)
    ort_out = OrtBackend(path, threads=1, label=str(path)).infer(inputs, [OUTPUT_NAME])
    onnx_image = ort_out[OUTPUT_NAME] if isinstance(ort_out, dict) else ort_out[0]
    with torch.no_grad():
        ref = ExportWrapper(gen).eval()(*(torch.from_numpy(v) for v in inputs.values())).numpy()
    return float(np.abs(np.asarray(onnx_image) - ref).max())


def export_generator(checkpoint: str | Path, output: str | Path) -> ExportResult:
    """Checkpoint -> ONNX file at ``output`` (written atomically), checked against PyTorch.

    Raises:
        ModelError: the checkpoint is missing or not a generator checkpoint.
        SinkError: the output cannot be written.
    """
    gen, state = load_generator(checkpoint)
    out = Path(output)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _export(gen, tmp)
        _add_metadata(tmp, gen, int(state["step"]))
        diff = check_against_torch(gen, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise SinkError(f"cannot write {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%d bytes), max |onnx - torch| = %.2e", out, out.stat().st_size, diff)
    return ExportResult(out, gen.cfg.size, gen.cfg.z_dim, diff, out.stat().st_size)
