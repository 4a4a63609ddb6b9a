"""Plain face geometry shared by every layer: no models, no I/O, numpy only.

Sits just above ``types``/``errors`` so that ``config``, ``models`` and ``anonymize`` can
all use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError


def similarity(src: NDArray[np.float32], dst: NDArray[np.float32]) -> NDArray[np.float64]:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` to
    ``dst`` (Umeyama 1991, no reflection) as a 2x3 matrix. Closed form: deterministic,
    unlike RANSAC estimators."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    var = (sc**2).sum() / len(s)
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var) if var > 0 else 1.0
    t = md - scale * rot @ ms
    return np.hstack([scale * rot, t[:, None]])


def check_region(values: Sequence[float]) -> None:
    """ConfigError unless ``values`` is a rectangle (4 numbers) or a polygon (>= 3 points)."""
    n = len(values)
    if n != 4 and (n < 6 or n % 2):
        raise ConfigError(
            f"invalid region {','.join(f'{v:g}' for v in values)!r}: "
            "4 numbers (x0,y0,x1,y1) or an even count >= 6 (polygon)"
        )
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"invalid region {','.join(f'{v:g}' for v in values)!r}: coordinates must be >= 0")
    if n == 4 and (values[2] <= values[0] or values[3] <= values[1]):
        raise ConfigError(f"invalid region {','.join(f'{v:g}' for v in values)!r}: need x1 > x0 and y1 > y0")
    fractions = [v for v in values if 0 < v < 1]
    if fractions and any(v > 1 for v in values):
        # "0.5,0,1,1.5": meant as relative, read as pixels it is a 1-pixel sliver
        raise ConfigError(
            f"invalid region {','.join(f'{v:g}' for v in values)!r}: mixes relative values (0 to 1) with values "
            "above 1 (pixels); give every value in [0, 1] (relative) or every value in pixels"
        )
