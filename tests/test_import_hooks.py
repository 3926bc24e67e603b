"""Functions that run right after a module's first import (the lazy integrations' trigger)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.launch import run_app, write_app

APP = """
    import importlib.resources, json, sys
    from otel_gevent_distro.runtime import import_hooks

    seen = []
    import_hooks.when_imported("lib_a", lambda m: seen.append(("a", m.VALUE, "lib_a" in sys.modules)))
    import_hooks.when_imported("lib_b", lambda m: 1 / 0)
    import_hooks.when_imported("json", lambda m: seen.append(("json-already", m is json, True)))
    before = ["lib_a" in sys.modules, import_hooks.waiting()]

    import lib_a
    import lib_a  # a second import runs nothing
    import lib_b  # the failing function: one warning, the import works
    after = {
        "seen": seen,
        "before": before,
        "waiting": import_hooks.waiting(),
        "loader_is_the_original": type(lib_a.__loader__).__name__ == "SourceFileLoader"
        and lib_a.__spec__.loader is lib_a.__loader__,
        "resource": importlib.resources.files("lib_a").joinpath("data.txt").read_text(),
        "finder_left": any(type(f).__module__ == import_hooks.__name__ for f in sys.meta_path),
        "b": lib_b.VALUE,
    }
    print(json.dumps(after))
"""


def test_a_function_runs_once_after_the_first_import(tmp_path: Path) -> None:
    (tmp_path / "lib_a").mkdir()
    (tmp_path / "lib_a" / "__init__.py").write_text("VALUE = 41 + 1\n")
    (tmp_path / "lib_a" / "data.txt").write_text("packaged data")
    (tmp_path / "lib_b.py").write_text("VALUE = 'b'\n")
    result = run_app(write_app(tmp_path, APP), "plain")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["before"] == [False, ["lib_a", "lib_b"]]
    assert seen["seen"] == [["json-already", True, True], ["a", 42, True]]
    assert seen["waiting"] == []
    assert seen["loader_is_the_original"] is True
    assert seen["resource"] == "packaged data"
    assert seen["finder_left"] is False
    assert seen["b"] == "b"
    (warning,) = result.warnings()
    assert "when lib_b is imported failed (ZeroDivisionError" in warning
