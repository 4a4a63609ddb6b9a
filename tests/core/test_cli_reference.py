"""docs/cli.md is generated from the real parsers and must match them (``streamanon.cli_reference``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamanon import cli_reference
from streamanon.cli import SUBCOMMANDS
from streamanon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


@pytest.fixture(scope="module")
def generated() -> str:
    return cli_reference.render()


def test_docs_cli_md_is_up_to_date(generated: str) -> None:
    current = DOC.read_text(encoding="utf-8")
    assert current == generated, f"docs/cli.md is out of date: run {cli_reference.REGENERATE}"


def test_docs_options_md_is_up_to_date_and_lists_every_option() -> None:
    from streamanon.options import OPTIONS

    generated = cli_reference.render_options()
    current = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert current == generated, f"docs/options.md is out of date: run {cli_reference.REGENERATE}"
    for opt in OPTIONS:
        assert f"`{opt.flag}`" in generated or f"`{opt.key}`" in generated, opt.flag
    assert "| `--steps` | `steps` | `anonymize.adv_steps` |" in generated  # flag and field differ: declared


def test_reference_has_every_subcommand_and_its_options(generated: str) -> None:
    headings = {line[4:-1] for line in generated.splitlines() if line.startswith("## `")}
    assert "streamanon" in headings
    for name in SUBCOMMANDS:
        assert any(h == f"streamanon {name}" or h.startswith(f"streamanon {name} ") for h in headings), name
    for sub in ("identity", "attack", "detect", "video", "temporal", "generator"):
        assert f"streamanon eval {sub}" in headings
    # options come from the parsers, with their defaults
    assert "| `--method METHOD` | `solid` |" in generated
    assert "| `--jobs JOBS`" in generated or "`-j JOBS`, `--jobs JOBS`" in generated
    assert "| `--check` |" in generated  # streams


def test_check_mode_fails_on_a_stale_file(tmp_path: Path, generated: str, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(generated.replace("| `--method METHOD` | `solid` |", "| `--method METHOD` | `blur` |"))
    assert cli_reference.main(["--check", "-o", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    fresh = tmp_path / "fresh.md"
    assert cli_reference.main(["-o", str(fresh)]) == 0
    assert cli_reference.main(["--check", "-o", str(fresh)]) == 0
    options = tmp_path / cli_reference.OPTIONS_NAME  # written beside it, checked with it
    options.write_text(options.read_text().replace("`anonymize.adv_steps`", "`anonymize.steps`"))
    assert cli_reference.main(["--check", "-o", str(fresh)]) == 1
    assert "options.md is out of date" in capsys.readouterr().err


def test_parsed_command_uses_each_commands_own_parser() -> None:
    parser, args = cli_reference.parsed_command(["clip.mp4", "-o", "out.mp4", "--method", "blur"])
    assert parser.prog == "streamanon" and args == ["clip.mp4", "-o", "out.mp4", "--method", "blur"]
    assert parser.parse_args(args).method == "blur"
    parser, args = cli_reference.parsed_command(["eval", "generator", "--train", "a", "--others", "b", "--cache", "c"])
    assert parser.prog == "streamanon eval generator" and args[0] == "--train"
    parser, args = cli_reference.parsed_command(["batch", "in", "-o", "out", "--jobs", "2"])
    assert parser.prog == "streamanon batch" and parser.parse_args(args).jobs == 2
    with pytest.raises(ConfigError, match="--no-such-flag"):
        parser.parse_args([*args, "--no-such-flag"])
