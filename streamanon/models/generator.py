"""Run an exported generator on a batch of aligned faces (no torch needed).

``GeneratorRunner`` is what ``--method generate`` calls: uint8 chips in, uint8 chips out,
on whichever backend the shared backend layer picks for the ONNX file (TensorRT, ONNX
Runtime or OpenVINO, exactly as for the detector: ``backends.loader.load_backend``).
A missing or unreadable model is a ``ModelError`` naming the file; there is no fallback
to an untrained network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..backends.loader import load_backend
from ..backends.registry import resolve_model
from ..config import EngineConfig
from ..errors import ConfigError, ModelError
from .store import shared

log = logging.getLogger(__name__)

INPUT_NAMES = ("chip", "mask", "landmarks", "z")
OUTPUT_NAME = "image"
#: Concurrent callers a shared generator is opened for (runs, live feeds).
CALLERS = 1
#: Where the shipped models live in a source checkout (``engines/generator-<size>.onnx``).
ENGINES = Path(__file__).resolve().parents[2] / "engines"


def default_model(size: int = 64) -> Path:
    """Path of the shipped generator for chips of ``size`` pixels, from the registry
    (``generator-<size>``: checked against its sha256; a checkout's ``engines/`` or the
    installed package's copy)."""
    return resolve_model(f"generator-{size}")


class GeneratorRunner:
    """A loaded generator.

    Args:
        model: ONNX file (default: the shipped ``engines/generator-64.onnx``).
        engine: backend settings (``backends.base.EngineConfig``; default: auto, as the
            detector's).
        callers: threads that will call at once (OpenVINO pools its threads for them).

    Attributes:
        size: chip side the model takes.
        z_dim: length of its latent codes.
        choice: the backend chosen, for run reports.

    Raises:
        ModelError: the file is missing, is not an ONNX model, or is not a generator
            (inputs other than chip/mask/landmarks/z).
    """

    def __init__(self, model: str | Path | None = None, engine: EngineConfig | None = None, callers: int = 1) -> None:
        path = Path(model) if model is not None else default_model()
        if not path.is_file():
            raise ModelError(f"generator model {path} not found")
        self.path = path
        try:
            self.backend, self.choice = load_backend(path, engine, callers)
        except ModelError as exc:
            msg = str(exc)
            raise ModelError(msg if str(path) in msg else f"generator model {path}: {msg}") from exc
        specs = {s.name: s for s in self.backend.input_spec()}
        if set(specs) != set(INPUT_NAMES) or OUTPUT_NAME not in {s.name for s in self.backend.output_spec()}:
            raise ModelError(
                f"{path} is not a streamanon generator (inputs {sorted(specs)}, expected {list(INPUT_NAMES)})"
            )
        chip_shape, z_shape = specs["chip"].shape, specs["z"].shape
        size, z_dim = chip_shape[-1], z_shape[-1]
        if not isinstance(size, int) or not isinstance(z_dim, int) or chip_shape[-2] != size:
            raise ModelError(
                f"{path}: generator inputs have no fixed chip size / latent length ({chip_shape}, {z_shape})"
            )
        self.size, self.z_dim = size, z_dim

    def latents(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
        """``n`` latent codes from ``rng`` (the caller owns the secret that seeds it)."""
        return rng.standard_normal((n, self.z_dim), dtype=np.float32)

    def __call__(
        self,
        chips: NDArray[np.uint8],
        masks: NDArray[Any],
        landmarks: NDArray[np.float32],
        z: NDArray[np.float32],
    ) -> NDArray[np.uint8]:
        """Generated faces for a batch.

        Args:
            chips: ``(N, S, S, 3)`` uint8 RGB generator chips (``anonymize.generator_chip.generator_alignments``).
            masks: ``(N, S, S)``, nonzero where the face is replaced (``anonymize.generator_chip.chip_masks``).
            landmarks: ``(N, 68, 2)`` chip pixels, all finite.
            z: ``(N, z_dim)`` latent codes.

        Returns:
            ``(N, S, S, 3)`` uint8 RGB: generated inside the mask, the input outside it.

        Raises:
            ConfigError: shapes that do not match the model, or missing landmarks.
        """
        s, n = self.size, len(chips)
        if chips.shape != (n, s, s, 3) or chips.dtype != np.uint8:
            raise ConfigError(
                f"generator chips must be uint8 of shape (N, {s}, {s}, 3), got {chips.dtype} {chips.shape}"
            )
        if masks.shape != (n, s, s):
            raise ConfigError(f"generator masks must have shape ({n}, {s}, {s}), got {masks.shape}")
        if landmarks.shape != (n, 68, 2):
            raise ConfigError(f"generator landmarks must have shape ({n}, 68, 2), got {landmarks.shape}")
        if z.shape != (n, self.z_dim):
            raise ConfigError(f"generator latents must have shape ({n}, {self.z_dim}), got {z.shape}")
        if not np.isfinite(landmarks).all():
            raise ConfigError("generator landmarks must be finite (faces without 68 points need another method)")
        if n == 0:
            return np.zeros((0, s, s, 3), np.uint8)
        feeds = {
            "chip": np.ascontiguousarray(chips.transpose(0, 3, 1, 2), np.float32) / np.float32(255),
            "mask": (masks > 0).astype(np.float32)[:, None],
            "landmarks": np.ascontiguousarray(landmarks, np.float32),
            "z": np.ascontiguousarray(z, np.float32),
        }
        out = self.backend.infer(feeds, [OUTPUT_NAME])
        image = np.asarray(out[OUTPUT_NAME] if isinstance(out, dict) else out[0])
        result = np.clip(image.transpose(0, 2, 3, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(result)

    def close(self) -> None:
        self.backend.close()


def shared_generator(model: str | Path | None = None, engine: EngineConfig | None = None) -> GeneratorRunner:
    """The process's ``GeneratorRunner`` for ``model`` on ``engine`` (loaded once, ``models.store``).

    Every run, file and live feed with the same settings shares it (backends may be called
    from several threads; OpenVINO's pool is sized for ``CALLERS`` of them).
    """
    path = Path(model) if model is not None else default_model()
    engine = engine or EngineConfig()
    return shared("generator", (str(path.resolve()), engine), lambda: GeneratorRunner(path, engine, CALLERS))
