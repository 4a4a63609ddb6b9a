"""``train generator`` -> ``--resume`` -> ``export generator`` -> ``eval generator`` on real faces."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamanon.errors import ConfigError, ModelError


def test_train_resume_export_and_memorisation_check(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], need_dlib: None
) -> None:
    from streamanon.generate.cli import export_main, main, train_main
    from streamanon.generate.memorisation import eval_generator_main
    from streamanon.generate.train import read_checkpoint

    ids = data_dir / "identities"
    train = [str(p) for p in sorted((ids / "dlib_johns" / "John_Salley").glob("*.jpg"))[:3]]
    train += [str(p) for p in sorted((ids / "dlib_johns" / "John_Savage").glob("*.jpg"))[:2]]
    others = sorted((ids / "face-api.js_bbt" / "penny").glob("*.png"))[:2]
    model, cache = tmp_path / "g.pt", tmp_path / "cache"
    common = [
        "generator",
        *train,
        "-o",
        str(model),
        "--cache",
        str(cache),
        "--channels",
        "8",
        "--batch",
        "2",
        "--no-progress",
    ]
    assert train_main([*common, "--max-steps", "3", "--id-weight", "0"]) == 0
    out = capsys.readouterr().out
    assert "training faces: 5 of 5 found in 5 files" in out and "step 3/3" in out
    assert read_checkpoint(model)["step"] == 3
    # every epoch wrote a sample grid, under the cache (raw faces stay there)
    assert len(list((cache / "samples").glob("g-epoch*.png"))) == 1
    with pytest.raises(ConfigError, match="--resume"):
        train_main([*common, "--max-steps", "3"])
    # a resumed run keeps its settings except those given again: here the target-identity terms
    assert main(["train", *common, "--max-steps", "5", "--resume", "--target-weight", "0.5", "--bank-weight=2"]) == 0
    state = read_checkpoint(model)
    assert state["step"] == 5
    assert state["train"]["target_weight"] == 0.5 and state["train"]["bank_weight"] == 2.0
    assert state["train"]["id_weight"] == 0.0 and state["train"]["batch"] == 2  # kept
    assert state["targets"]["bank"].shape == (5, 128)  # one descriptor per training face
    out = capsys.readouterr().out
    assert "step 5/5" in out and "resumed with changed settings" in out

    onnx = tmp_path / "g.onnx"
    assert export_main(["generator", str(model), "-o", str(onnx)]) == 0
    out = capsys.readouterr().out
    diff = float(out.split("max |onnx - torch| on random inputs: ")[1].split()[0])
    assert diff < 1e-4

    js = tmp_path / "mem.json"
    argv = [
        "--generator",
        str(onnx),
        "--train",
        *train,
        "--others",
        *map(str, others),
        "--cache",
        str(cache),
        "--samples",
        "1",
        "--json",
        str(js),
    ]
    assert eval_generator_main(argv) == 0
    out = capsys.readouterr().out
    assert "match any training identity" in out
    import json

    res = json.loads(js.read_text())
    assert res["training_faces"] == 5 and res["other_faces"] == 2 and res["generated_faces"] == 2
    assert 0 <= res["generated_match_rate"] <= 1 and 0 <= res["real_match_rate"] <= 1
    with pytest.raises(ConfigError, match="other people"):
        eval_generator_main(["--generator", str(onnx), "--train", *train, "--others", train[0], "--cache", str(cache)])


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    from streamanon.generate.cli import export_main, train_main

    with pytest.raises(ConfigError):
        train_main(["generator", str(tmp_path)])  # no -o / --cache
    with pytest.raises(ModelError, match=r"nope\.pt"):
        export_main(["generator", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.onnx")])
    with pytest.raises(ModelError, match=r"nope\.pt"):
        train_main(
            ["generator", str(tmp_path), "-o", str(tmp_path / "nope.pt"), "--cache", str(tmp_path / "c"), "--resume"]
        )
