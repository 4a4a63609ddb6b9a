"""Every option of the product, declared once.

An ``Option`` (``option.py``) names its flag, the ``PipelineConfig`` (or ``LiveConfig``) field it sets,
its type, default and help, the modes it applies to (``file``, ``folder``, ``live``,
``streams``, ``batch``, ``eval``) and the methods it applies to. From ``OPTIONS`` come:

- the argparse flags of every command (``add_arguments``),
- the ``streamanon streams`` TOML tables (``values_from_table``: every unknown key of a
  table reported at once with a did-you-mean, types checked, one line naming the table),
- ``PipelineConfig`` from parsed values (``config_from_values``, the CLI's and the TOML's),
- the check that an option given applies to the mode and the method (``check_applies``),
- ``streamanon eval``'s method parameters (``eval_params``: ``blur:strength=2``),
- the generated reference ``docs/options.md`` (``streamanon.cli_reference``).

A TOML key is the flag's long name with ``_`` (``--mask-scale`` -> ``mask_scale``); the
config field it sets may differ (``--steps`` -> ``anonymize.adv_steps``): that mapping is
the ``field`` of its declaration. The declarations: ``pipeline.py`` (the ``PipelineConfig``
options) and ``feeds.py`` (the commands' own, verification, live feeds, the streams file).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from ..config import PipelineConfig
from ..errors import ConfigError
from .feeds import FEED_OPTIONS, RUN_OPTIONS
from .option import (
    _PARSERS,
    _PARTS,
    ALL,
    BATCH,
    EVAL,
    FEEDS,
    FILE,
    FOLDER,
    GENERATE_ADVERSARIAL,
    GROUPS,
    KIND_NAMES,
    LIVE,
    MODE_NAMES,
    MODES,
    RUN,
    STREAMS,
    Option,
    parse_color,
    parse_kv,
    parse_list,
    parse_time,
)
from .pipeline import PIPELINE_OPTIONS

__all__ = [
    "ALL",
    "BATCH",
    "BY_DEST",
    "EVAL",
    "EVAL_MAIN",
    "FEEDS",
    "FILE",
    "FOLDER",
    "GENERATE_ADVERSARIAL",
    "GROUPS",
    "KIND_NAMES",
    "LIVE",
    "MODES",
    "MODE_NAMES",
    "OPTIONS",
    "RUN",
    "STREAMS",
    "Option",
    "add_arguments",
    "check_applies",
    "config_from_values",
    "defaults",
    "eval_params",
    "live_fields",
    "options_for",
    "parse_color",
    "parse_kv",
    "parse_list",
    "parse_time",
    "unknown_keys",
    "values_from_table",
    "verify_every",
]

#: Every option, in the order the parsers show them.
OPTIONS: tuple[Option, ...] = (*RUN_OPTIONS, *PIPELINE_OPTIONS, *FEED_OPTIONS)
BY_DEST: dict[str, Option] = {o.dest: o for o in OPTIONS}
#: The main parameter of each eval method spec: ``blur:2`` is ``blur:strength=2``.
EVAL_MAIN: dict[str, str] = {
    "blur": "strength",
    "pixelate": "blocks",
    "dp-pixelate": "eps",
    "svd": "eps",
    "k-same": "k",
    "adversarial": "eps",
    "generate": "model",
    "surrogate": "keep",
}


def options_for(modes: Collection[str]) -> list[Option]:
    """The options that apply to any of ``modes``, in their declaration order."""
    return [o for o in OPTIONS if o.modes & set(modes)]


def defaults(modes: Collection[str]) -> dict[str, Any]:
    """``{dest: default}`` of the options of ``modes`` (what a parser's namespace holds untouched)."""
    return {o.dest: o.value_default for o in options_for(modes)}


# -- argparse ---------------------------------------------------------------------------------------
def _argtype(opt: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return _PARSERS[opt.kind](text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = opt.kind
    return parse


def add_arguments(
    parser: argparse.ArgumentParser,
    modes: Collection[str],
    groups: Sequence[str] | None = None,
    flags: Iterable[str] | None = None,
) -> list[argparse.Action]:
    """Add the flags of the options that apply to ``modes`` (of ``groups``, or only ``flags``).

    Options of group ``""`` go on ``parser`` itself; the others into their argument group,
    made once per parser. Returns the actions added.
    """
    wanted = set(flags) if flags is not None else None
    made: dict[str | None, Any] = {g.title: g for g in parser._action_groups}
    actions: list[argparse.Action] = []
    for opt in options_for(modes):
        if (groups is not None and opt.group not in groups) or (wanted is not None and opt.flag not in wanted):
            continue
        container: Any = parser
        if opt.group:
            container = made.get(opt.group)
            if container is None:
                container = made[opt.group] = parser.add_argument_group(opt.group, GROUPS.get(opt.group))
        kw: dict[str, Any] = {"default": opt.value_default, "help": opt.help}
        if opt.kind == "bool":
            kw["action"] = "store_true"
        else:
            if opt.kind != "str":
                kw["type"] = _argtype(opt)
            if opt.choices:
                kw["choices"] = list(opt.choices)
            if opt.metavar:
                kw["metavar"] = opt.metavar
            if opt.repeat:
                kw["action"] = "append"
        actions.append(container.add_argument(opt.flag, **kw))
        if opt.negation:
            negation, help = opt.negation
            actions.append(container.add_argument(negation, dest=opt.dest, action="store_false", help=help))
    return actions


# -- what was given where it does not apply ------------------------------------------------------------
def _names(modes: Iterable[str]) -> str:
    words = [MODE_NAMES[m] for m in MODES if m in set(modes)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def given_flag(opt: Option, value: Any) -> str:
    """The flag the user typed for ``opt`` (``--no-reconnect`` when that stored the value)."""
    return opt.negation[0] if opt.negation and value is False else opt.flag


def check_applies(given: Mapping[str, Any], mode: str, method: str | None = None, toml: bool = False) -> None:
    """ConfigError when an option given (``{dest: value}``) does not apply to ``mode`` or ``method``.

    The options that do not apply to the mode are named together, in one line; then the
    first option of another method. ``toml``: name them by their TOML key, not their flag.
    """
    opts = [(BY_DEST[d], v) for d, v in given.items() if d in BY_DEST]

    def name(o: Option, v: Any) -> str:
        return o.key if toml else given_flag(o, v)

    wrong = [(o, v) for o, v in opts if mode not in o.modes]
    if wrong:
        flags = ", ".join(sorted(name(o, v) for o, v in wrong))
        places = sorted({_names(o.modes) for o, _ in wrong})
        verb = "applies" if len(wrong) == 1 else "apply"
        raise ConfigError(f"{flags} only {verb} to {' or '.join(places)}, not to {MODE_NAMES[mode]}")
    if method is None:
        return
    actual = GENERATE_ADVERSARIAL if method == "generate" and given.get("adversarial") else method
    for o, v in opts:
        if not (o.applies_to_method(method) or o.applies_to_method(actual)):
            raise ConfigError(
                f"{name(o, v)} is an option of --method {' or '.join(o.methods)}, not of --method {actual}"
            )


# -- PipelineConfig ---------------------------------------------------------------------------------
def config_from_values(values: Mapping[str, Any]) -> PipelineConfig:
    """``PipelineConfig`` from ``{dest: value}`` (a namespace's, or a streams table's).

    A value missing keeps the field's default.
    """
    parts: dict[str, dict[str, Any]] = {name: {} for name in _PARTS}
    for opt in OPTIONS:
        part, _, name = opt.field.partition(".")
        if part in parts and opt.dest in values:
            parts[part][name] = opt.to_field(values[opt.dest])
    return PipelineConfig(**{name: cls(**parts[name]) for name, cls in _PARTS.items()})


def live_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{LiveOptions field: value}`` of the live options in ``values``."""
    out = {}
    for opt in OPTIONS:
        part, _, name = opt.field.partition(".")
        if part == "live" and opt.dest in values:
            out[name] = opt.to_field(values[opt.dest])
    return out


def verify_every(verify: bool, every: int | None) -> int:
    """``--verify`` / ``--verify-every N`` (or ``verify``/``verify_every`` in a streams table)
    as one number: 0 no verification, N every N-th frame."""
    if every is None:
        return 1 if verify else 0
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(f"invalid --verify-every {every!r}: expected an integer >= 1 (0: no verification)")
    if every == 0 and verify:
        raise ConfigError("--verify-every 0 turns verification off: drop --verify, or give N >= 1")
    return every


# -- a TOML table -------------------------------------------------------------------------------------
def _did_you_mean(key: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def unknown_keys(keys: Iterable[str], known: Collection[str]) -> str:
    """``'blurr' (did you mean 'blur_strength'?), 'start' (an option of files and folders only)``:
    every key of ``keys`` not in ``known``."""
    out = []
    for k in keys:
        if k in known:
            continue
        opt = BY_DEST.get(k)
        out.append(f"{k!r} (an option of {_names(opt.modes)} only)" if opt else f"{k!r}{_did_you_mean(k, known)}")
    return ", ".join(out)


def _toml_value(opt: Option, value: Any) -> Any:
    """A TOML value -> the option's value (as its flag's argument would give); ConfigError."""
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}")
        return value
    if opt.repeat:
        items = value if isinstance(value, list) else [value]
        if opt.kind == "kv" and isinstance(value, Mapping):
            return [(str(k), str(v)) for k, v in value.items()]
        return [_item(opt, v) for v in items]
    return _item(opt, value)


def _item(opt: Option, value: Any) -> Any:
    if isinstance(value, str):
        return opt.parse(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if opt.kind in ("int",) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if opt.kind in ("float", "time") and numeric:
        if opt.kind == "time" and value < 0:
            raise ConfigError(f"invalid time {value!r}: expected seconds >= 0")
        return float(value)
    if opt.kind == "str" and numeric and opt.choices:  # landmarks = 68
        return opt.parse(str(value))
    if opt.kind in ("region", "color", "list") and isinstance(value, list) and value:
        if opt.kind == "list" and all(isinstance(v, str) for v in value):
            return tuple(value)
        if opt.kind != "list" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return opt.parse(",".join(str(v) for v in value))
    raise ConfigError(f"expected {KIND_NAMES[opt.kind]}, got {value!r}")


def _resolve(key: str, allowed: Collection[str]) -> tuple[str, bool] | None:
    """``(dest, negated)`` of a TOML key among the ``allowed`` dests; None when unknown."""
    name = key.replace("-", "_")
    if name in allowed:
        return name, False
    if _NEGATIONS.get(name) in allowed:  # no_reconnect = true
        return _NEGATIONS[name], True
    negated = f"no_{name}"
    if negated in allowed and BY_DEST[negated].kind == "bool":  # audio = false: --no-audio
        return negated, True
    return None


def values_from_table(table: Mapping[str, Any], where: str, allowed: Collection[str]) -> dict[str, Any]:
    """``{dest: value}`` from a TOML table whose keys must be among the ``allowed`` dests.

    ``KEY = false`` sets an option ``--no-KEY`` (``audio = false``), ``no_KEY = true`` the
    negation of ``--KEY`` (``no_reconnect = true``, as ``reconnect = false``). Raises
    ConfigError naming ``where`` and the key: every unknown key at once, each with a
    did-you-mean; a value of the wrong type.
    """
    resolved = {str(k): _resolve(str(k), allowed) for k in table}
    bad = [k for k, r in resolved.items() if r is None]
    if bad:
        plural = "s" if len(bad) > 1 else ""
        raise ConfigError(f"{where}: unknown option{plural} {unknown_keys(bad, allowed)}")
    out: dict[str, Any] = {}
    for key, r in resolved.items():
        assert r is not None
        dest, negated = r
        opt = BY_DEST[dest]
        try:
            value = _toml_value(opt, table[key])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        out[dest] = (not value) if negated else value
    return out


_NEGATIONS = {o.negation[0][2:].replace("-", "_"): o.dest for o in OPTIONS if o.negation}


# -- eval method parameters -------------------------------------------------------------------------
def eval_params(method: str) -> dict[str, Option]:
    """``{key: option}``: the parameters an eval method spec takes (``blur:strength=2``)."""
    return {o.eval_keys[method]: o for o in OPTIONS if method in o.eval_keys}
