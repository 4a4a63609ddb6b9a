"""Offline HTML reports: tables, matplotlib plots and example images, all embedded as
base64 PNG (no external file, script or font is referenced).

Face images end up in a report only when the user asked for one (``--html``).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import MissingDependencyError, SinkError
from ..io import temp_path_for

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.grid{display:grid;gap:6px;margin:1em 0}.grid figure{margin:0;text-align:center;font-size:12px}
.grid img{width:100%;image-rendering:pixelated}.note{color:#555;font-size:14px}
"""


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError.for_extra("matplotlib", "eval") from exc
    return Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")


def png_data_uri(image: NDArray[np.uint8]) -> str:
    """An RGB array as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig: Any) -> str:
    """A matplotlib figure as an inline ``<img>``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def fmt_text(value: Any) -> str:
    """Numbers with 3 decimals, ``-`` for missing values (plain text)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def fmt(value: Any) -> str:
    """``fmt_text`` escaped for HTML."""
    return html.escape(fmt_text(value))


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An HTML table of ``rows`` restricted to ``columns``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image_grid(rows: Sequence[Sequence[tuple[str, NDArray[np.uint8]]]]) -> str:
    """Rows of captioned images (e.g. original / anonymised / attacked)."""
    if not rows:
        return ""
    cols = max(len(r) for r in rows)
    cells = []
    for row in rows:
        for label, img in row:
            cap = html.escape(label)
            cells.append(f'<figure><img alt="{cap}" src="{png_data_uri(img)}"><figcaption>{cap}</figcaption></figure>')
        cells.extend("<figure></figure>" for _ in range(cols - len(row)))
    return f'<div class="grid" style="grid-template-columns:repeat({cols},minmax(0,160px))">{"".join(cells)}</div>'


def plot_leakage_vs_quality(methods: dict[str, dict[str, Any]]) -> str:
    """Scatter of verification leakage against whole-image PSNR and SSIM per method."""
    fig = _figure()
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB, whole image)"), (axes[1], "ssim", "SSIM (whole image)")):
        for name, m in methods.items():
            x, y = m.get(key), m.get("verification_leakage")
            if x is None or y is None:
                continue
            ax.scatter([x], [y], s=40)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("verification leakage")
    axes[0].set_ylim(-0.05, 1.05)
    fig.suptitle("Leakage vs quality per method (lower-left leaks less but changes more)")
    return figure_html(fig)


def plot_recall_vs_size(runs: Sequence[dict[str, Any]], threshold: str) -> str:
    """Recall per face-size bucket, one line per detector input size."""
    fig = _figure()
    ax = fig.subplots()
    for run in runs:
        names = list(run["buckets"])
        rec = [run["buckets"][n]["at"].get(threshold, {}).get("recall") for n in names]
        ax.plot(names, [np.nan if r is None else r for r in rec], marker="o", label=f"det-size {run['det_size']}")
    ax.set_xlabel("face height (px)")
    ax.set_ylabel(f"recall at threshold {threshold}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_html(fig)


def plot_attack(attacks: dict[str, dict[str, Any]]) -> str:
    """Verification leakage and rank-1 on held-out faces, before and after the attack."""
    fig = _figure()
    ax = fig.subplots()
    names = list(attacks)
    x = np.arange(len(names))
    series = [
        ("leakage before", [attacks[n]["before"]["verification_leakage"] for n in names]),
        ("leakage after", [attacks[n]["after"]["verification_leakage"] for n in names]),
        ("rank-1 before", [attacks[n]["before"]["rank1"] for n in names]),
        ("rank-1 after", [attacks[n]["after"]["rank1"] for n in names]),
    ]
    w = 0.2
    for k, (label, vals) in enumerate(series):
        ax.bar(x + (k - 1.5) * w, [np.nan if v is None else v for v in vals], w, label=label)
    chance = [attacks[n]["after"]["chance"] for n in names]
    ax.scatter(x, [np.nan if c is None else c for c in chance], marker="_", s=400, color="k", label="rank-1 chance")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of held-out faces")
    ax.legend(fontsize=8)
    ax.set_title("Leakage after a learned inversion attack (held-out identities)")
    return figure_html(fig)


def write_html(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> None:
    """Write a self-contained report atomically.

    Raises:
        SinkError: the file cannot be written.
    """
    target = Path(path)
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    tmp = temp_path_for(target)
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SinkError(f"cannot write report {target}: {exc.strerror or exc}") from exc
