"""The ``Option`` record, the modes and argument groups, and the value parsers (``streamanon.options``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from ..anonymize.factory import METHODS
from ..anonymize.selective import parse_region
from ..config import AnonymizeConfig, DetectConfig, IOConfig, LiveConfig, TrackConfig
from ..errors import ConfigError

FILE, FOLDER, LIVE, STREAMS, BATCH, EVAL = "file", "folder", "live", "streams", "batch", "eval"
MODES = (FILE, FOLDER, LIVE, STREAMS, BATCH, EVAL)
#: How an error message names a mode.
MODE_NAMES = {
    FILE: "files",
    FOLDER: "folders",
    LIVE: "live feeds",
    STREAMS: "streams",
    BATCH: "batch",
    EVAL: "eval",
}
#: The modes of ``streamanon INPUT``: one parser, the mode known from the inputs.
RUN = frozenset({FILE, FOLDER, LIVE})
ALL = frozenset(MODES)
PIPELINE = ALL  # options of the pipeline itself: every mode
NO_EVAL = ALL - {EVAL}
FEEDS = frozenset({LIVE, STREAMS})
NO_STREAMS = ALL - {STREAMS}
#: ``--method generate --adversarial``: options of adversarial perturbation apply there too.
GENERATE_ADVERSARIAL = "generate --adversarial"


def _methods_by_field() -> dict[str, tuple[str, ...]]:
    """``{AnonymizeConfig field: the --method values whose option it is}``, read from the method
    specs (``MethodSpec.parameters``); a method taking ``--adversarial`` (``NAME --adversarial``)
    also takes the parameters of the perturbing methods. A field no spec lists is in none."""
    out: dict[str, list[str]] = {}
    for name, spec in METHODS.items():
        for field in spec.parameters:
            out.setdefault(field, []).append(name)
    perturbing = {p for s in METHODS.values() if s.perturbs for p in s.parameters}
    for name, spec in METHODS.items():
        for field in sorted(perturbing) if spec.adversarial else ():
            out[field].append(f"{name} --adversarial")
    return {field: tuple(names) for field, names in out.items()}


_METHODS_BY_FIELD = _methods_by_field()

#: Argument groups, in the order the parsers show them, with their description.
GROUPS: dict[str, str | None] = {
    "": None,  # the command's own options (no group)
    "anonymisation": None,
    "selective anonymisation": None,
    "detection and tracking": None,
    "encoding": None,
    "verification of the output": None,
    "live feeds": "used when the input or output is rtsp://, rtmp://, http(s)://, udp://, srt://, /dev/video*, "
    "or - (stdin/stdout)",
    "streams": "the top level of a streams TOML file only",
}


# -- value parsers: text (a flag's argument, a TOML string) -> value; ConfigError when invalid ---------
def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``MM:SS(.s)`` or ``HH:MM:SS(.s)`` (``--start``/``--duration``)."""
    parts = str(text).strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if (
        not values
        or len(values) > 3
        or any(not math.isfinite(v) or v < 0 for v in values)
        or any(v >= 60 for v in values[1:])
    ):
        raise ConfigError(f"invalid time {text!r}: use seconds (12.5), MM:SS or HH:MM:SS(.ms)")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def parse_color(text: str) -> tuple[int, int, int]:
    """``R,G,B`` or ``#RRGGBB``."""
    s = text.strip().lstrip("#")
    try:
        if "," in s:
            r, g, b = (int(v) for v in s.split(","))
            return r, g, b
        if len(s) == 6:
            return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
    except ValueError:
        pass
    raise ConfigError(f"invalid color {text!r}: use R,G,B or #RRGGBB")


def parse_kv(text: str) -> tuple[str, str]:
    """``KEY=VALUE``."""
    if "=" not in text:
        raise ConfigError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def parse_list(text: str) -> tuple[str, ...]:
    """A comma list: ``A,B``."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _number(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"expected {'integer' if kind is int else 'number'}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


_int, _float = _number(int), _number(float)

Kind = Literal["str", "int", "float", "bool", "time", "color", "region", "kv", "list"]
_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": _int,
    "float": _float,
    "time": parse_time,
    "color": parse_color,
    "region": parse_region,
    "kv": parse_kv,
    "list": parse_list,
}
#: How docs/options.md names each kind of value.
KIND_NAMES: dict[str, str] = {
    "str": "text",
    "int": "integer",
    "float": "number",
    "bool": "true/false",
    "time": "seconds or [HH:]MM:SS",
    "color": "R,G,B or #RRGGBB",
    "region": "X0,Y0,X1,Y1[,...]",
    "kv": "KEY=VALUE",
    "list": "A,B,...",
}
_PARTS: dict[str, type[Any]] = {
    "detect": DetectConfig,
    "track": TrackConfig,
    "anonymize": AnonymizeConfig,
    "io": IOConfig,
}
_UNSET: Any = object()


@dataclass(frozen=True)
class Option:
    """One option (module doc).

    Attributes:
        flag: the long flag, ``--mask-scale``; its TOML key is ``mask_scale``.
        help: the help text.
        group: the argument group it is shown in (``GROUPS``).
        field: ``PART.NAME`` it sets: a ``PipelineConfig`` part (``detect``, ``track``,
            ``anonymize``, ``io``), ``live`` (``LiveOptions``), or empty: read by the command.
        kind: the type of its value (``KIND_NAMES``); ``bool`` is an on/off flag.
        default: its default; by default the ``field``'s dataclass default.
        choices: the values allowed.
        metavar: the argument's name in the help.
        repeat: repeatable (``--only-region A --only-region B``; a TOML list).
        invert: the field is the negation of the flag (``--no-eot`` -> ``adv_eot``).
        negation: a second flag storing false into the same value, and its help (``--no-reconnect``).
        modes: where it applies (``MODES``).
        eval_keys: ``{method: key}``: its name in an eval method spec (``blur:strength=2``).
        shared: in a streams file it is set at the top level, for every feed (one detector).
    """

    flag: str
    help: str
    group: str
    field: str = ""
    kind: Kind = "str"
    default: Any = _UNSET
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    repeat: bool = False
    invert: bool = False
    negation: tuple[str, str] | None = None
    modes: frozenset[str] = PIPELINE
    eval_keys: Mapping[str, str] = dc_field(default_factory=dict)
    shared: bool = False

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    key = dest  # its TOML key

    @property
    def value_default(self) -> Any:
        """The value when the option is not given (before ``to_field``)."""
        if self.default is not _UNSET:
            return self.default
        if self.repeat:
            return []
        part, _, name = self.field.partition(".")
        cls = {**_PARTS, "live": LiveConfig}.get(part)
        if cls is None:
            return False if self.kind == "bool" else None
        value = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        return (not value) if self.invert else value

    def parse(self, text: str) -> Any:
        """A flag's argument (or a TOML string) -> its value; ConfigError when invalid."""
        value = _PARSERS[self.kind](text)
        if self.choices and value not in self.choices:
            raise ConfigError(f"invalid choice {text!r} (choose from {', '.join(self.choices)})")
        return value

    def to_field(self, value: Any) -> Any:
        """The parsed value -> the config field's value."""
        if self.invert:
            return not value
        if self.repeat:
            return tuple(value)
        return value

    @property
    def methods(self) -> tuple[str, ...]:
        """The ``--method`` values it applies to (empty: every method), not declared here: read
        from the method specs (``MethodSpec.parameters`` lists its ``anonymize`` field);
        ``GENERATE_ADVERSARIAL`` is ``generate`` with ``--adversarial``."""
        part, _, name = self.field.partition(".")
        return _METHODS_BY_FIELD.get(name, ()) if part == "anonymize" else ()

    def applies_to_method(self, method: str) -> bool:
        return not self.methods or method in self.methods


def _o(flag: str, help: str, group: str, field: str = "", **kw: Any) -> Option:
    return Option(flag, help, group, field, **kw)


_A, _S, _D, _E, _V, _L, _T = (
    "anonymisation",
    "selective anonymisation",
    "detection and tracking",
    "encoding",
    "verification of the output",
    "live feeds",
    "streams",
)
_a, _d, _t, _io, _l = AnonymizeConfig, DetectConfig, TrackConfig, IOConfig, LiveConfig
