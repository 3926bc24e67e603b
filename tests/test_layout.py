"""The package's parts, and the one direction their imports may take.

README's "Layout" and each part's ``__init__`` docstring describe the parts;
this is the rule, from the bottom up:

* ``base``: the top-level modules ``_log``, ``version``,
  ``environment_variables`` and ``settings``;
* ``runtime``: fork, the server's fork, the exit budget, gevent's patch state;
* ``pipeline``, ``export``, ``health``, ``instrumentation``: side by side,
  none of them imports another;
* ``startup``: the start-up sequence and the launch paths;
* ``doctor``;
* ``cli``: the command.

A part imports its own modules and those of the parts below it, never a
part beside or above it. The package's ``__init__`` only re-exports the
pipeline's public classes (and the version). Every ``import`` counts: at module
level, inside a function, under ``TYPE_CHECKING``.

Each module is also imported alone in a fresh interpreter, so an import
cycle fails here whatever order the rest of the suite imports things in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import otel_gevent_distro
from tests.launch import clean_environment

PACKAGE = "otel_gevent_distro"
PACKAGE_DIR = Path(otel_gevent_distro.__file__).resolve().parent

#: The parts, lowest first; parts on one line are side by side.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("base",),
    ("runtime",),
    ("pipeline", "export", "health", "instrumentation"),
    ("startup",),
    ("doctor",),
    ("cli",),
)
BASE_MODULES = ("_log", "version", "environment_variables", "settings")
#: The package's ``__init__``: the version, and the pipeline's classes, loaded on first use.
PACKAGE_MAY_IMPORT = frozenset({"base", "pipeline"})

RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def part_of(module: str) -> str:
    """The part a module of the package belongs to (``package`` for the package's ``__init__``)."""
    names = module.split(".")
    if names == [PACKAGE]:
        return "package"
    first = names[1]
    if first in BASE_MODULES:
        return "base"
    if first in RANK:
        return first
    raise AssertionError(f"{module} belongs to no part: add it to a part and to tests/test_layout.py")


def imported_modules(module: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, module of the package) for every import statement in ``source``."""
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                source_module = f"{base}.{node.module}" if node.module else base
            else:
                source_module = node.module or ""
            if source_module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                candidate = f"{source_module}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else source_module


def may_import(importer: str, imported: str) -> bool:
    if importer == imported:
        return True
    if importer == "package":
        return imported in PACKAGE_MAY_IMPORT
    if imported == "package":
        return False  # the package's __init__ is for users; inside, import the defining module
    return RANK[imported] < RANK[importer]


def violations(module: str, source: str) -> list[str]:
    importer = part_of(module)
    found = []
    for line, target in imported_modules(module, source):
        imported = part_of(target)
        if not may_import(importer, imported):
            found.append(f"{module}:{line} ({importer}) imports {target} ({imported})")
    return found


def test_every_module_belongs_to_a_part_and_has_a_docstring() -> None:
    assert len(MODULES) > 40, sorted(MODULES)
    for module, path in MODULES.items():
        part_of(module)
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and docstring.strip(), f"{module} has no docstring saying what it owns"


def test_each_part_says_what_it_may_import() -> None:
    for part in RANK:
        init = PACKAGE_DIR / part / "__init__.py"
        if part != "base" and init.exists():
            docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert "Dependency direction" in docstring, f"{part}/__init__.py does not say what the part may import"


def test_imports_only_go_down() -> None:
    found = [line for module, path in MODULES.items() for line in violations(module, path.read_text())]
    assert not found, "imports against the layering:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "allowed"),
    [
        (f"{PACKAGE}.runtime.forksafe", "from otel_gevent_distro.startup import sequence", False),
        (f"{PACKAGE}.settings", "def f():\n    from otel_gevent_distro.runtime import exit_budget", False),
        (f"{PACKAGE}.pipeline.batch", "from otel_gevent_distro.export import otlp_http", False),
        (f"{PACKAGE}.health.monitor", "import otel_gevent_distro.pipeline.worker", False),
        (f"{PACKAGE}.doctor.report", "from otel_gevent_distro import cli", False),
        (f"{PACKAGE}.startup.sequence", "from otel_gevent_distro import GeventBatchSpanProcessor", False),
        (f"{PACKAGE}.pipeline.batch", "from . import worker\nfrom ..runtime import forksafe", True),
        (f"{PACKAGE}.runtime.exit_budget", "from ..health import monitor", False),
        (f"{PACKAGE}.startup.configurator", "from otel_gevent_distro.pipeline.span_processor import X", True),
        (PACKAGE, "from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor", True),
    ],
)
def test_the_check_catches_an_import_against_the_direction(module: str, source: str, allowed: bool) -> None:
    assert (violations(module, source) == []) is allowed


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    env = clean_environment()

    def import_alone(module: str) -> tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-c", "import importlib, sys; importlib.import_module(sys.argv[1])", module],
            cwd=PACKAGE_DIR.parent,  # the very package this test process imported
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return module, done.returncode, done.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [result for result in pool.map(import_alone, MODULES) if result[1] != 0]
    assert not failed, "\n\n".join(f"{module} (exit {code}):\n{stderr}" for module, code, stderr in failed)
