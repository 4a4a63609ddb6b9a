"""Attribute drift of a replaced face: head pose and mouth from 68 landmarks.

A replacement should keep what is not identity: where the head points and whether the
mouth is open. Both are read from dlib's 68 points (iBUG 300-W order), fitted on the
original frame and, at the same box, on the output:

* ``head_pose``: yaw, pitch and roll in degrees from ``cv2.solvePnP`` of six points (nose
  tip, chin, outer eye corners, mouth corners) onto a generic 3D face (the widely used
  model of Mallick's "Head pose estimation using OpenCV and Dlib"), with a pinhole camera
  whose focal length is the image width and whose centre is the image centre. The angles
  are those of a generic head with a guessed camera: good for differences (original vs
  output of the same frame, same camera), not as absolute angles.
* ``mouth_ratio``: inner-lip opening over mouth width (mean of the three vertical
  inner-lip gaps 61-67, 62-66, 63-65 over the corner distance 60-64; about 0 closed);
  ``mouth_open``: ratio above ``MOUTH_OPEN_AT``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

#: 68-point indices of the six points of ``MODEL_3D``.
POSE_POINTS = (30, 8, 36, 45, 48, 54)
#: A generic head in camera-like axes (x right, y down, z away from the viewer), model units
#: (about 0.1 mm): nose tip, chin, outer corner of the image-left eye, of the image-right
#: eye, left and right mouth corner. Frontal and upright is the identity rotation.
MODEL_3D = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.0, 330.0, 65.0],
        [-225.0, -170.0, 135.0],
        [225.0, -170.0, 135.0],
        [-150.0, 150.0, 125.0],
        [150.0, 150.0, 125.0],
    ],
    np.float64,
)
#: Inner-lip ratio above which the mouth counts as open (chosen from the geometry, not
#: tuned: a gap of a fifth of the mouth's width is clearly parted lips).
MOUTH_OPEN_AT = 0.2


def camera_matrix(width: int, height: int) -> NDArray[np.float64]:
    """Pinhole camera with focal length ``width`` pixels, centred on the image."""
    return np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)


def euler_from_matrix(r: NDArray[np.float64]) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``."""
    pitch = math.atan2(r[2, 1], r[2, 2])
    yaw = math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2]))
    roll = math.atan2(r[1, 0], r[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def matrix_from_euler(yaw: float, pitch: float, roll: float) -> NDArray[np.float64]:
    """The inverse of ``euler_from_matrix`` (degrees)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    out: NDArray[np.float64] = rz @ ry @ rx
    return out


def head_pose(landmarks68: NDArray[np.floating], width: int, height: int) -> tuple[float, float, float] | None:
    """``(yaw, pitch, roll)`` degrees of a face from its 68 points, or None (non-finite
    points or no solution)."""
    pts = np.asarray(landmarks68, np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        return None
    image_points = np.ascontiguousarray(pts[list(POSE_POINTS)])
    ok, rvec, _ = cv2.solvePnP(
        MODEL_3D, image_points, camera_matrix(width, height), np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return None
    rot, _ = cv2.Rodrigues(rvec)
    return euler_from_matrix(np.asarray(rot, np.float64))


def pose_difference(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    """Absolute per-angle difference in degrees, wrapped to [0, 180]."""
    return tuple(abs((x - y + 180.0) % 360.0 - 180.0) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def mouth_ratio(landmarks68: NDArray[np.floating]) -> float | None:
    """Inner-lip opening over mouth width (module doc), or None for degenerate points."""
    p = np.asarray(landmarks68, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        return None
    width = float(np.linalg.norm(p[60] - p[64]))
    if width < 1e-6:
        return None
    gaps = [np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))]
    return float(np.mean(gaps) / width)


def mouth_open(landmarks68: NDArray[np.floating], threshold: float = MOUTH_OPEN_AT) -> bool | None:
    """Whether the mouth is open (``mouth_ratio`` above ``threshold``); None if unknown."""
    r = mouth_ratio(landmarks68)
    return None if r is None else r > threshold
