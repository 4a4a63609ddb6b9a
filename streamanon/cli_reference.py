"""The command-line reference, ``docs/cli.md``, generated from the real argparse parsers, and
the options reference, ``docs/options.md``, generated from ``streamanon.options``.

``python3 -m streamanon.cli_reference -o docs/cli.md`` rewrites both (``options.md`` beside
``cli.md``); ``--check`` exits 1 when a file differs from what the code says now
(``tests/core/test_cli_reference.py`` does the same). Each parser is taken from its command's
own entry point (``streamanon.cli.SUBCOMMANDS`` and the file/URL mode), which is called with
``parse_args`` intercepted: what is documented is what that command parses, not a copy of it.
Nothing runs past the parser.

``parsed_command(argv)`` is the same interception for one command line: it returns the parser
and the arguments ``streamanon ARGV`` would parse (the README's commands are checked with it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .cli import SUBCOMMANDS, run_command
from .live.streams_config import FEED, PER_STREAM_ONLY, SHARED, UNSUPPORTED
from .options import EVAL, GROUPS, KIND_NAMES, MODE_NAMES, MODES, OPTIONS, STREAMS, Option

DEFAULT_OUTPUT = Path("docs/cli.md")
OPTIONS_NAME = "options.md"  # written beside cli.md
REGENERATE = "python3 -m streamanon.cli_reference -o docs/cli.md"
# Entry points that pick a second parser from their first argument, before parsing.
EXTRA_ARGV: dict[str, list[list[str]]] = {"eval": [["generator"]]}


class _Captured(BaseException):
    """Raised by the intercepted ``parse_args``: carries the parser and what it was given."""

    def __init__(self, parser: argparse.ArgumentParser, args: list[str]) -> None:
        super().__init__(parser.prog)
        self.parser, self.argv = parser, args


@contextlib.contextmanager
def _intercept() -> Iterator[None]:
    def parse(self: argparse.ArgumentParser, args: Sequence[str] | None = None, namespace: Any = None) -> NoReturn:
        raise _Captured(self, list(args or []))

    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_args = parse  # type: ignore[method-assign,assignment]
    argparse.ArgumentParser.parse_known_args = parse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved  # type: ignore[method-assign]


def _entry(name: str | None) -> Callable[[list[str]], int]:
    """The function ``streamanon.cli.main`` hands the arguments to (file/URL mode for ``None``)."""
    if name is None:
        return run_command
    module, func = SUBCOMMANDS[name].split(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn


def _capture(name: str | None, argv: list[str]) -> _Captured:
    entry = _entry(name)
    with _intercept():
        try:
            entry(argv)
        except _Captured as got:
            return got
    raise RuntimeError(f"streamanon {name or ''} {' '.join(argv)}: the entry point parsed no arguments")


def parsed_command(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser ``streamanon ARGV`` parses its arguments with, and those arguments.

    The dispatch is ``streamanon.cli.main``'s: a first argument naming a subcommand (and not
    an existing path) goes to that subcommand's entry point.
    """
    args = list(argv)
    if args and args[0] in SUBCOMMANDS and not Path(args[0]).exists():
        got = _capture(args[0], args[1:])
    else:
        got = _capture(None, args)
    return got.parser, got.argv


@dataclass(frozen=True)
class _Section:
    parser: argparse.ArgumentParser
    title: str  # the prog, e.g. "streamanon eval identity"


def _sections() -> list[_Section]:
    out: list[_Section] = []

    def add(parser: argparse.ArgumentParser) -> None:
        out.append(_Section(parser, parser.prog))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                    add(sub)

    add(_capture(None, []).parser)
    for name in SUBCOMMANDS:
        add(_capture(name, []).parser)
        for argv in EXTRA_ARGV.get(name, []):
            add(_capture(name, argv).parser)
    return out


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = dict(vars(action), prog=parser.prog)
    if action.choices is not None:
        params["choices"] = ", ".join(str(c) for c in action.choices)
    return _md(action.help % params)


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    if action.metavar is not None:
        meta = str(action.metavar)
    elif action.choices is not None:
        meta = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        meta = action.dest.upper()
    if action.nargs in ("+", "*"):
        meta += " ..."
    return ", ".join(f"`{s} {meta}`" for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d in (None, argparse.SUPPRESS, [], "", ()) or action.required:
        return "required" if action.required else ""
    if isinstance(d, tuple) and all(isinstance(v, (int, str)) for v in d):
        d = ",".join(str(v) for v in d)
    return f"`{d}`"


def _usage(parser: argparse.ArgumentParser) -> str:
    if parser.usage:
        return parser.usage % {"prog": parser.prog}
    parts = [parser.prog]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parts.append("{" + ",".join(action.choices) + "} ...")
        elif not action.option_strings:
            name = str(action.metavar or action.dest)
            parts.append({"?": f"[{name}]", "+": f"{name} ...", "*": f"[{name} ...]"}.get(str(action.nargs), name))
        elif action.required:
            parts.append(_option(action).split(",")[-1].strip(" `"))
    if any(a.option_strings and not a.required for a in parser._actions):
        parts.insert(1, "[options]")
    return " ".join(parts)


def _render_section(sec: _Section, seen: dict[tuple[str, ...], str]) -> list[str]:
    """One parser's section; an option group already shown with the same rows is linked, not repeated."""
    p = sec.parser
    lines = [f"## `{sec.title}`", ""]
    if p.description and "\n" in p.description:  # laid out by hand (RawDescriptionHelpFormatter)
        lines += ["```text", p.description.strip("\n"), "```", ""]
    elif p.description:
        lines += [_md(p.description), ""]
    lines += ["```text", _usage(p), "```", ""]
    groups = [g for g in p._action_groups if any(a.help != argparse.SUPPRESS for a in g._group_actions)]
    for group in groups:
        subs = [a for a in group._group_actions if isinstance(a, argparse._SubParsersAction)]
        rows = [a for a in group._group_actions if not isinstance(a, argparse._SubParsersAction)]
        title = "options" if group.title in ("optional arguments", "options") else str(group.title)
        if subs:
            lines += [f"**{title}: subcommands**", "", "| subcommand | what it does |", "|---|---|"]
            for sub in subs:
                helps = {c.dest: c.help or "" for c in sub._choices_actions}
                for name in sub.choices:
                    lines.append(f"| [`{name}`](#{_anchor(sub.choices[name].prog)}) | {_md(helps.get(name, ''))} |")
            lines.append("")
        if rows:
            table = tuple(
                f"| {_option(a)} | {_default(a)} | {_help(p, a)} |" for a in rows if a.help != argparse.SUPPRESS
            )
            lines += [f"**{title}**", ""]
            key = (title, *table)
            if key in seen and len(table) > 3:
                lines += [f"The {title} options of [`{seen[key]}`](#{_anchor(seen[key])}).", ""]
                continue
            seen.setdefault(key, sec.title)
            if group.description:
                lines += [_md(group.description), ""]
            lines += ["| option | default | meaning |", "|---|---|---|", *table, ""]
    if p.epilog:
        lines += [_md(p.epilog), ""]
    return lines


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def streams_keys() -> dict[str, list[str]]:
    """The keys ``streamanon streams`` accepts in its TOML file, by where they go."""
    return {
        "top level (shared by every feed)": list(SHARED),
        "[[stream]] only": list(PER_STREAM_ONLY),
        "[defaults] or [[stream]]": sorted(FEED),
        "refused": list(UNSUPPORTED),
    }


def _value(opt: Option) -> str:
    kind = "{" + ",".join(opt.choices) + "}" if opt.choices else KIND_NAMES[opt.kind]
    return _md(kind + (", repeatable (TOML: a list)" if opt.repeat else ""))


def _modes(opt: Option) -> str:
    if set(opt.modes) == set(MODES):
        text = "all"
    elif set(MODES) - set(opt.modes) == {EVAL}:
        text = "all but eval"
    else:
        text = ", ".join(MODE_NAMES[m] for m in MODES if m in opt.modes)
    if opt.shared and STREAMS in opt.modes:
        text += " (streams: top level)"
    return _md(text)


def _option_row(opt: Option) -> str:
    cli = set(opt.modes) - {STREAMS}
    flag = f"`{opt.flag}`" + (f", `{opt.negation[0]}`" if opt.negation else "") if cli else "(TOML only)"
    key = f"`{opt.key}`" if STREAMS in opt.modes else ""
    d = opt.value_default
    if isinstance(d, tuple):
        d = ",".join(str(v) for v in d)
    default = "" if d in (None, [], "") or opt.kind == "bool" else f"`{d}`"
    if opt.kind == "bool" and opt.value_default:
        default = "on"
    help = opt.help.replace("%%", "%")
    field = f"`{opt.field}`" if opt.field else ""
    methods = ", ".join(opt.methods)
    return f"| {flag} | {key} | {field} | {_value(opt)} | {default} | {_modes(opt)} | {methods} | {_md(help)} |"


def render_options() -> str:
    """The whole of ``docs/options.md``: every option of ``streamanon.options``."""
    lines = [
        "# Options",
        "",
        f"Generated from `streamanon/options.py` by `{REGENERATE}`; do not edit by hand",
        "(`tests/core/test_cli_reference.py` fails when this file and the schema disagree).",
        "",
        "Each option is declared once, in `streamanon/options.py`: its flag, the `streamanon streams`",
        "TOML key, its value, its default, the modes it applies to (files, folders, live feeds, streams,",
        "batch, eval; `all`), for some the `--method` values it applies to, and what it sets (`sets`: the",
        "`PipelineConfig` field, or `live.` for a live feed's settings; empty: read by the command itself).",
        "An option given where it does not apply is an error (exit 2) naming the option and where it",
        "applies. The command lines of",
        "each mode are in [cli.md](cli.md); the streams file in [live.md](live.md#many-cameras-in-one-process).",
        "",
        "In a streams file a key takes the option's value: `true`/`false` for an on/off flag (`false`",
        "for a `--no-` option's key without `no_`: `reconnect = false`, `audio = false`), a number, a",
        'string (`duration = "01:30"`), a list for a repeatable option, a table for `KEY=VALUE` options',
        '(`input_option = {probesize = "32"}`). Every unknown key of a table is reported at once.',
        "",
    ]
    for group, description in GROUPS.items():
        opts = [o for o in OPTIONS if o.group == group]
        if not opts:
            continue
        lines += [f"## {group or 'run'}", ""]
        if description:
            lines += [_md(description), ""]
        lines += [
            "| option | TOML key | sets | value | default | modes | methods | meaning |",
            "|---|---|---|---|---|---|---|---|",
            *(_option_row(o) for o in opts),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def render() -> str:
    """The whole of ``docs/cli.md``."""
    sections = _sections()
    lines = [
        "# Command-line reference",
        "",
        f"Generated from the argparse parsers by `{REGENERATE}`; do not edit by hand",
        "(`tests/core/test_cli_reference.py` fails when this file and the parsers disagree).",
        "Defaults shown are the parsers' own; where a default is empty the help says what applies.",
        "Every option with its TOML key and the modes and methods it applies to: [options.md](options.md).",
        "",
    ]
    lines += [f"- [`{s.title}`](#{_anchor(s.title)})" for s in sections]
    lines += ["- [`streamanon streams` TOML keys](#streamanon-streams-toml-keys)", ""]
    seen: dict[tuple[str, ...], str] = {}
    for sec in sections:
        lines += _render_section(sec, seen)
    lines += [
        "## `streamanon streams` TOML keys",
        "",
        "Keys are the long option names above without `--` (`-` or `_`); a commented example is in",
        "[live.md](live.md#many-cameras-in-one-process). Values are read as the flags read them: `true`/`false`",
        "for an on/off flag (`reconnect = false` is `--no-reconnect`), a number or a string, a list for a",
        "repeatable option (and `providers`), a table for `KEY=VALUE` options. Each key's value, default and",
        "where it applies: [options.md](options.md).",
        "",
    ]
    for where, keys in streams_keys().items():
        lines += [f"**{where}**: " + ", ".join(f"`{k}`" for k in keys), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m streamanon.cli_reference", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help=f"write here, and {OPTIONS_NAME} beside it (default: print)")
    ap.add_argument("--check", action="store_true", help=f"exit 1 when {DEFAULT_OUTPUT} (or -o) is out of date")
    ns = ap.parse_args(argv)
    if not ns.output and not ns.check:
        sys.stdout.write(render())
        return 0
    path = ns.output or DEFAULT_OUTPUT
    files = {path: render(), path.with_name(OPTIONS_NAME): render_options()}
    if ns.check:
        stale = [p for p, text in files.items() if (p.read_text(encoding="utf-8") if p.exists() else "") != text]
        for p in stale:
            print(f"{p} is out of date: run {REGENERATE}", file=sys.stderr)
        return 1 if stale else 0
    for p, text in files.items():
        p.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
