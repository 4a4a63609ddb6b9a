"""``eval identity`` on real identity photos: the control leaks, solid does not, and
results repeat exactly for a seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamanon.anonymize.methods import IdentityAnonymizer, SolidAnonymizer
from streamanon.cli import main


def _identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], faces: Path, methods: str, name: str
) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"{name}.json"
    code = main(["eval", "identity", "--faces", str(faces), "--methods", methods, "--json", str(out), "--seed", "3"])
    captured = capsys.readouterr()
    data = json.loads(out.read_text()) if out.exists() else {}
    return code, data, captured.out + captured.err


@pytest.mark.slow
def test_control_leaks_and_solid_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dir: Path, need_dlib: None
) -> None:
    code, data, text = _identity(tmp_path, capsys, data_dir / "identities" / "dlib_johns", "none,solid", "johns")
    assert code == 0, text
    none, solid = data["methods"]["none"], data["methods"]["solid"]
    assert none["faces"] == solid["faces"] == 55
    assert none["verification_leakage"] >= 0.9
    assert data["control"]["ok"] is True
    assert solid["verification_leakage"] <= 0.01
    assert solid["missed"] == 0  # the padded chips are all found by the product
    # Identification: originals are recognised far above chance; solid masks drop to chance level.
    assert none["rank1"] >= 0.9 > 3 * none["chance"]
    assert solid["rank1"] <= none["chance"] + 0.15
    assert none["detection_survival"] >= 0.9 and solid["detection_survival"] <= 0.05
    # Quality: solid changes the faces (low PSNR) but nothing outside the masks.
    assert none["psnr"] == 100.0 and solid["psnr"] < 15.0
    assert solid["psnr_outside"] in (None, 100.0)
    assert "chance" in text and "| solid |" in text


def test_results_repeat_for_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subset_faces: Callable[..., Path], need_dlib: None
) -> None:
    faces = subset_faces("face-api.js_bbt", identities=3, per_identity=3)
    runs = [_identity(tmp_path, capsys, faces, "none,pixelate:4", f"run{k}") for k in range(2)]
    assert runs[0][0] == runs[1][0] == 0
    assert runs[0][1]["methods"] == runs[1][1]["methods"]
    assert set(runs[0][1]["methods"]) == {"none", "pixelate:4"}
    assert runs[0][1]["methods"]["pixelate:4"]["faces"] == 9


def test_broken_harness_is_reported(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    subset_faces: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    need_dlib: None,
) -> None:
    """If the 'none' control stops leaking, the command must refuse its own numbers."""

    def solid_apply(self: IdentityAnonymizer, image: np.ndarray, dets: Any, info: Any = None) -> np.ndarray:
        return SolidAnonymizer(self.config).apply(image, dets, info)

    monkeypatch.setattr(IdentityAnonymizer, "apply", solid_apply)
    faces = subset_faces("dlib_johns", identities=2, per_identity=2)
    code, data, text = _identity(tmp_path, capsys, faces, "none", "broken")
    assert code != 0
    assert "harness is broken" in text
    assert data["control"]["ok"] is False  # the JSON is still written, flagged


def test_html_report_is_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subset_faces: Callable[..., Path], need_dlib: None
) -> None:
    pytest.importorskip("matplotlib")
    faces = subset_faces("dlib_johns", identities=2, per_identity=2)
    html = tmp_path / "report.html"
    code = main(
        [
            "eval",
            "identity",
            "--faces",
            str(faces),
            "--methods",
            "none,pixelate",
            "--html",
            str(html),
            "--examples",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 1 + 2 * 3  # the plot + 2 faces x (original, none, pixelate)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "Leakage vs quality" in text
    assert not list(tmp_path.glob(".*partial*"))
