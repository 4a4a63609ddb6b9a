"""The package's layout rules, read from the source with ``ast`` (nothing is imported).

1. The core (errors, types, geometry, config, io, backends, models, track, detect,
   anonymize, options, pipeline, runner) imports none of its consumers (cli, demo, eval, live,
   batch, the generator's training in ``generate``) -- anywhere in a module: at the top,
   inside a function, or under ``TYPE_CHECKING``.
2. The core's stages stack: a stage imports only itself and the stages below it.
3. No module imports a ``_private`` name from another package.
4. An import inside a function is for an optional heavy dependency only (the allow-list
   below, or a streamanon module that imports one at its top: a lazy gateway such as
   ``generate.train``, which needs torch), never a way around an import cycle; the one
   exception is ``LAZY_BY_DESIGN``: named importers loading named modules when they are used,
   for the default path's start-up and memory.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamanon"

#: The core's stages, bottom first; a module belongs to the longest prefix that names it.
CORE_STAGES: tuple[tuple[str, ...], ...] = (
    ("streamanon.errors",),
    ("streamanon.types",),
    ("streamanon.geometry",),
    ("streamanon.config",),
    ("streamanon._workers", "streamanon._memory", "streamanon.io", "streamanon.progress"),
    ("streamanon.backends",),
    ("streamanon.models",),
    ("streamanon.track",),
    ("streamanon.detect",),
    ("streamanon.anonymize",),
    ("streamanon.options",),  # every option declared once (flags, streams TOML, eval parameters)
    ("streamanon.pipeline", "streamanon.audit"),
    ("streamanon.runner",),
    ("streamanon",),  # the package's __init__: the public API
)
#: Everything that uses the core; none of it may be imported by the core.
CONSUMERS = (
    "streamanon.__main__",
    "streamanon.cli",
    "streamanon.cli_reference",  # generates docs/ from the parsers
    "streamanon.cliutil",
    "streamanon.demo",
    "streamanon.eval",
    "streamanon.live",
    "streamanon.batch",
    "streamanon.generate",
    "streamanon.verify",  # --verify: checks a written output with another detector and a recogniser
)
#: Optional or heavy third-party packages (and platform-specific stdlib modules) that a
#: function may import where it needs them.
HEAVY = frozenset(
    {
        "torch",
        "dlib",
        "tensorrt",
        "cuda",
        "ray",
        "prometheus_client",
        "matplotlib",
        "skimage",
        "openvino",
        "onnxruntime",
        "onnx",
        "onnxscript",
        "scipy",
        "tqdm",
        "PIL",
        "gi",
        "tomllib",
        "tomli",
        "fcntl",
        "ctypes",
    }
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def is_consumer(module: str) -> bool:
    return any(_within(module, c) for c in CONSUMERS)


def stage(module: str) -> int | None:
    """Index of ``module``'s core stage (None for a consumer or a non-streamanon module)."""
    if is_consumer(module) or not _within(module, "streamanon"):
        return None
    best, best_len = None, -1
    for i, prefixes in enumerate(CORE_STAGES):
        for p in prefixes:
            if _within(module, p) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported from (absolute)
    name: str | None  # the name taken from it (``from target import name``), or None
    in_function: bool
    line: int
    type_only: bool = False  # under ``if TYPE_CHECKING:``

    def where(self) -> str:
        what = f"from {self.target} import {self.name}" if self.name else f"import {self.target}"
        return f"{self.module}:{self.line}: {what}"

    def targets(self) -> tuple[str, ...]:
        """``target``, and ``target.name`` when that may be a submodule."""
        return (self.target, f"{self.target}.{self.name}") if self.name else (self.target,)


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def imports_of(source: str, module: str, is_pkg: bool) -> Iterator[Import]:
    tree = ast.parse(source)
    in_function: set[int] = set()
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        inside = id(node) in in_function
        typing_only = id(node) in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, inside, node.lineno, typing_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield Import(module, target, alias.name, inside, node.lineno, typing_only)


def package_of(module: str, is_pkg: bool) -> str:
    return module if is_pkg else module.rpartition(".")[0]


def scan(root: Path) -> tuple[list[Import], dict[str, bool]]:
    """Every import in the package under ``root``, and each module's ``is_pkg``."""
    found: list[Import] = []
    modules: dict[str, bool] = {}
    for path in sorted(root.rglob("*.py")):
        module, is_pkg = module_name(path, root)
        modules[module] = is_pkg
        found += imports_of(path.read_text(encoding="utf-8"), module, is_pkg)
    return found, modules


#: Imports inside functions on purpose, not for a heavy dependency: the method registry imports
#: a method's module (and the models it loads) when a factory builds that method, and the CLI
#: the live endpoints for live input only, so the default path (``solid``, a file) does not
#: load them (issue 24: ``tests/backends/test_lean_imports.py``; ~30 ms of start-up, 2-3 MiB).
#: Importer -> the streamanon modules it may import so.
LAZY_BY_DESIGN: dict[str, frozenset[str]] = {
    "streamanon.anonymize.factory": frozenset(
        "streamanon." + m
        for m in (
            "anonymize.adversarial",
            "anonymize.dp",
            "anonymize.generate",
            "anonymize.generate_adversarial",
            "anonymize.ksame",
            "anonymize.surrogate",
            "anonymize.surrogate_bank",
            "anonymize.svd",
            "models.landmarks",
            "models.recognizer",
        )
    ),
    "streamanon.cli": frozenset({"streamanon.live"}),
}


def gateways(found: list[Import]) -> set[str]:
    """streamanon modules that import an optional heavy dependency at their top (for real,
    not only for type checking)."""
    return {i.module for i in found if not i.in_function and not i.type_only and i.target.split(".")[0] in HEAVY}


def core_into_consumers(found: list[Import]) -> list[str]:
    return [
        i.where()
        for i in found
        if not is_consumer(i.module) and any(is_consumer(t) for t in i.targets() if _within(t, "streamanon"))
    ]


def stages_pointing_up(found: list[Import], modules: dict[str, bool]) -> list[str]:
    bad = []
    for i in found:
        own = stage(i.module)
        if own is None:
            continue
        for t in i.targets():
            if t not in modules:  # a name, not a submodule
                continue
            theirs = stage(t)
            if theirs is not None and theirs > own:
                bad.append(f"{i.where()} (stage {own} imports stage {theirs})")
                break
    return bad


def private_across_packages(found: list[Import], modules: dict[str, bool]) -> list[str]:
    bad = []
    for i in found:
        if not i.name or not i.name.startswith("_") or i.name.startswith("__"):
            continue
        if not _within(i.target, "streamanon"):
            continue
        target_pkg = package_of(i.target, modules.get(i.target, False))
        if package_of(i.module, modules[i.module]) != target_pkg:
            bad.append(i.where())
    return bad


def function_imports_not_heavy(found: list[Import]) -> list[str]:
    lazy_ok = gateways(found)
    bad = []
    for i in found:
        if not i.in_function or i.target.split(".")[0] in HEAVY:
            continue
        if any(t in lazy_ok for t in i.targets()):
            continue
        if i.target in LAZY_BY_DESIGN.get(i.module, ()):
            continue
        bad.append(i.where())
    return bad


# -- the rules on the package ---------------------------------------------------------------
@pytest.fixture(scope="module")
def package() -> tuple[list[Import], dict[str, bool]]:
    found, modules = scan(PACKAGE)
    assert len(modules) > 80 and len(found) > 1000  # the scan saw the package
    return found, modules


def test_every_module_is_core_or_consumer(package: tuple[list[Import], dict[str, bool]]) -> None:
    _, modules = package
    unplaced = [m for m in modules if stage(m) is None and not is_consumer(m)]
    assert not unplaced, f"modules in neither the core's stages nor the consumers: {unplaced}"


def test_core_imports_no_consumer(package: tuple[list[Import], dict[str, bool]]) -> None:
    found, _ = package
    bad = core_into_consumers(found)
    assert not bad, "the core imports its consumers:\n" + "\n".join(bad)


def test_core_stages_stack(package: tuple[list[Import], dict[str, bool]]) -> None:
    found, modules = package
    bad = stages_pointing_up(found, modules)
    assert not bad, "core imports pointing up the stack:\n" + "\n".join(bad)


def test_no_private_names_across_packages(package: tuple[list[Import], dict[str, bool]]) -> None:
    found, modules = package
    bad = private_across_packages(found, modules)
    assert not bad, "_private names imported from another package:\n" + "\n".join(bad)


def test_function_imports_are_heavy_optional_dependencies(package: tuple[list[Import], dict[str, bool]]) -> None:
    found, _ = package
    bad = function_imports_not_heavy(found)
    assert not bad, "imports inside functions that are no optional heavy dependency:\n" + "\n".join(bad)


# -- the checks catch what they are for ---------------------------------------------------------
def _fake(tmp_path: Path, files: dict[str, str]) -> tuple[list[Import], dict[str, bool]]:
    root = tmp_path / "streamanon"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return scan(root)


def test_checks_catch_each_violation(tmp_path: Path) -> None:
    found, modules = _fake(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "def f():\n    from .anonymize import selective\n",  # up the stack, in a function
            "anonymize/__init__.py": "",
            "anonymize/selective.py": "from ..eval.recognizer import DlibRecogniser\n",  # into a consumer
            "anonymize/adversarial.py": "from ..models.dlib_torch import _plan\n",  # private, other package
            "anonymize/ksame.py": "from .selective import _ok\n",  # private, same package: fine
            "models/__init__.py": "",
            "models/dlib_torch.py": "import numpy\nif TYPE_CHECKING:\n    import torch\ndef g():\n    import torch\n",
            "eval/__init__.py": "",
            "eval/recognizer.py": "DlibRecogniser = 1\n",
            "eval/cli.py": (
                "def h():\n    from . import recognizer\n    from ..generate import train\n"
                "    from ..models import dlib_torch\n"
            ),
            "generate/__init__.py": "",
            "generate/train.py": "import torch\n",  # a gateway: lazily importing it is fine
        },
    )
    assert core_into_consumers(found) == [
        "streamanon.anonymize.selective:1: from streamanon.eval.recognizer import DlibRecogniser"
    ]
    assert stages_pointing_up(found, modules) == [
        "streamanon.config:2: from streamanon.anonymize import selective (stage 3 imports stage 9)"
    ]
    assert private_across_packages(found, modules) == [
        "streamanon.anonymize.adversarial:1: from streamanon.models.dlib_torch import _plan"
    ]
    assert function_imports_not_heavy(found) == [
        "streamanon.config:2: from streamanon.anonymize import selective",
        "streamanon.eval.cli:2: from streamanon.eval import recognizer",
        "streamanon.eval.cli:4: from streamanon.models import dlib_torch",  # torch only for type checking
    ]


def test_lazy_by_design_is_narrow(tmp_path: Path) -> None:
    """``LAZY_BY_DESIGN`` lets the named importer load the named modules only."""
    found, _ = _fake(
        tmp_path,
        {
            "__init__.py": "",
            "anonymize/__init__.py": "",
            "anonymize/factory.py": "def f():\n    from .surrogate import S\n    from .selective import K\n",
            "anonymize/surrogate.py": "def g():\n    from .ksame import P\n",
            "anonymize/selective.py": "K = 1\n",
            "anonymize/ksame.py": "P = 1\n",
        },
    )
    assert function_imports_not_heavy(found) == [
        "streamanon.anonymize.factory:3: from streamanon.anonymize.selective import K",
        "streamanon.anonymize.surrogate:2: from streamanon.anonymize.ksame import P",
    ]
