"""One declaration per option (``streamanon.options``): the flags, the config fields, the modes
and methods it applies to, eval's method parameters all come from it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from streamanon.anonymize import METHODS
from streamanon.anonymize.factory import SPECS
from streamanon.batch.cli import build_parser as batch_parser
from streamanon.cli import given_options, main, run_parser
from streamanon.config import LiveConfig, PipelineConfig
from streamanon.errors import ConfigError
from streamanon.eval.cli import build_parser as eval_parser
from streamanon.eval.product import parse_methods
from streamanon.options import (
    BY_DEST,
    EVAL,
    EVAL_MAIN,
    GENERATE_ADVERSARIAL,
    OPTIONS,
    RUN,
    Option,
    check_applies,
    config_from_values,
    defaults,
    eval_params,
    verify_every,
)

#: Options of a command that are not pipeline options (the command's own arguments).
OWN = {"-h", "--help", "-o", "--output", "--report", "-q", "--quiet", "-v", "--verbose", "--version"}


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s not in OWN}


def test_every_flag_of_the_run_parser_is_declared_once_in_the_schema() -> None:
    flags = _flags(run_parser())
    declared = {o.flag: o for o in OPTIONS} | {o.negation[0]: o for o in OPTIONS if o.negation}
    assert set(flags) <= set(declared), set(flags) - set(declared)
    for flag, action in flags.items():
        opt = declared[flag]
        assert action.dest == opt.dest
        if flag == opt.flag:  # the help, type and metavar the parser shows are the declaration's
            assert action.help == opt.help and action.metavar == opt.metavar, flag
    # --duration: one declaration (MM:SS for files and feeds alike), not re-typed after the fact
    duration = flags["--duration"]
    assert duration.metavar == "TIME" and duration.type is not None and duration.type("01:30") == 90.0
    assert {o.flag for o in OPTIONS if RUN & o.modes} == {o.flag for o in OPTIONS if o.flag in flags}


def test_fields_methods_and_eval_keys_name_real_things() -> None:
    live = {f.name for f in dataclasses.fields(LiveConfig)}
    parts = {p: {f.name for f in dataclasses.fields(cls)} for p, cls in PipelineConfig._PARTS.items()}
    for o in OPTIONS:
        part, _, name = o.field.partition(".")
        if o.field:
            assert name in (live if part == "live" else parts[part]), o.flag
        assert set(o.methods) <= set(METHODS) | {GENERATE_ADVERSARIAL}, o.flag
        assert set(o.eval_keys) <= set(SPECS), o.flag
    assert len(BY_DEST) == len(OPTIONS)  # one declaration per option
    for method, main_key in EVAL_MAIN.items():
        assert main_key in eval_params(method)


def test_defaults_are_the_configs_defaults() -> None:
    assert config_from_values(defaults(RUN)) == PipelineConfig()
    ns = run_parser().parse_args(["x.mp4"])
    assert config_from_values(vars(ns)) == PipelineConfig()
    # flags and fields that differ are declared: --steps -> adv_steps, --no-eot -> not adv_eot
    cfg = config_from_values({"steps": 7, "no_eot": True, "adversarial": True, "detect_workers": 3})
    assert cfg.anonymize.adv_steps == 7 and not cfg.anonymize.adv_eot and cfg.anonymize.generate_adversarial
    assert cfg.detect.workers == 3


def test_eval_and_batch_parsers_take_the_options_of_their_mode() -> None:
    batch = _flags(batch_parser())
    assert "--verify" in batch and "--seed" in batch and "--segment" not in batch and "--start" not in batch
    sub = next(a for a in eval_parser()._actions if isinstance(a, argparse._SubParsersAction))
    identity = sub.choices["identity"]
    flags = _flags(identity)
    assert "--method" in flags and "--verify" not in flags and "--segment" not in flags
    assert identity.parse_args(["--faces", "f"]).seed == 0  # eval's own --seed, not the product's
    assert not BY_DEST["seed"].modes & {EVAL}


def test_one_mechanism_for_mode_and_method() -> None:
    check_applies({"segment": 60.0}, "live")
    with pytest.raises(ConfigError, match=r"^--segment only applies to live feeds and streams, not to files$"):
        check_applies({"segment": 60.0}, "file")
    with pytest.raises(ConfigError, match=r"^--no-reconnect, --start only apply to "):
        check_applies({"reconnect": False, "start": 1.0}, "batch")
    with pytest.raises(ConfigError, match=r"--verify only applies to files, folders, streams and batch"):
        check_applies({"verify": True}, "live")
    with pytest.raises(ConfigError, match="--dp-cells is an option of --method dp-pixelate, not of --method blur"):
        check_applies({"dp_cells": 8}, "file", "blur")
    with pytest.raises(ConfigError, match="dp_cells is an option of --method dp-pixelate"):
        check_applies({"dp_cells": 8}, "streams", "blur", toml=True)
    check_applies({"steps": 3, "adversarial": True}, "file", "generate")
    with pytest.raises(ConfigError, match=r"not of --method generate$"):
        check_applies({"steps": 3}, "file", "generate")
    check_applies({"face_bank": "bank.npz"}, "file", "surrogate")  # surrogate's bank (refused before)


def test_given_options_count_a_default_value_typed(tmp_path: Path) -> None:
    parser = run_parser()
    argv = ["x.mp4", "--reconnect", "--method", "blur"]
    assert {"reconnect", "method", "input"} <= given_options(parser, argv)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--reconnect"], "--reconnect only applies to live feeds and streams, not to files"),
        (["--verify-every", "0", "--verify"], "--verify-every 0 turns verification off"),
        (["--verify-every", "-2"], "invalid --verify-every -2"),
    ],
)
def test_cli_refuses_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(b"")  # never read: the options are checked first
    code = main([str(src), "-o", str(tmp_path / "o.jpg"), "-q", *args])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and needle in err and len(err.strip().splitlines()) == 1, err


def test_verify_every_zero_means_off_everywhere() -> None:
    assert verify_every(False, None) == 0 and verify_every(True, None) == 1 and verify_every(False, 3) == 3
    assert verify_every(False, 0) == 0  # as `verify_every = 0` in a streams table
    with pytest.raises(ConfigError):
        verify_every(True, 0)


def test_eval_method_parameters_come_from_the_schema() -> None:
    assert set(eval_params("svd")) == {"eps", "k", "size"}
    assert eval_params("svd")["k"] is BY_DEST["svd_k"] and eval_params("k-same")["k"] is BY_DEST["k"]
    (spec,) = parse_methods("adversarial:4:steps=3:objective=targeted:k=5", PipelineConfig().anonymize)
    a = spec.config
    assert (a.epsilon, a.adv_steps, a.adv_objective, a.k) == (4.0, 3, "targeted", 5)
    (spec,) = parse_methods("generate:adv=6", PipelineConfig().anonymize)
    assert spec.config.generate_adversarial and spec.config.epsilon == 6.0
    with pytest.raises(ConfigError, match="objective='nope': expected untargeted, targeted, k-anonymity"):
        parse_methods("adversarial:objective=nope", PipelineConfig().anonymize)


def test_batch_refuses_an_option_of_another_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    code = main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "blur", "--k", "5"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and "--k is an option of --method k-same" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_config_from_dict_names_every_unknown_key_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_dict({"anonymize": {"methd": "blur", "blur_strenght": 2, "qqq": 1}})
    msg = str(info.value)
    assert "'methd' (did you mean 'method'?)" in msg and "'blur_strenght' (did you mean 'blur_strength'?)" in msg
    assert "'qqq'" in msg and "valid keys: method" in msg and "\n" not in msg


def test_the_method_specs_and_the_schema_cannot_drift() -> None:
    """A method's parameters are its spec's (``MethodSpec.parameters``); the options that apply
    to it are exactly those, and ``--adversarial`` adds the perturbing methods' parameters."""
    fields = {o.field.partition(".")[2]: o for o in OPTIONS if o.field.startswith("anonymize.")}
    for name, spec in METHODS.items():
        declared = {f for f, o in fields.items() if name in o.methods}
        assert declared == set(spec.parameters), (name, declared ^ set(spec.parameters))
    perturbing = {p for s in METHODS.values() if s.perturbs for p in s.parameters}
    with_adversarial = {f for f, o in fields.items() if GENERATE_ADVERSARIAL in o.methods}
    assert with_adversarial == perturbing
    assert {m for o in OPTIONS for m in o.methods} - set(METHODS) == {GENERATE_ADVERSARIAL}
    assert "methods" not in {f.name for f in dataclasses.fields(Option)}  # read from the specs, never declared
    for o in OPTIONS:  # an eval key names a parameter of its method
        for method in o.eval_keys:
            assert not o.methods or method in o.methods or f"{method} --adversarial" in o.methods, (o.flag, method)
