"""The import rules the packages promise, checked (statically with ``ast``, at run time in one subprocess).

* every ``stream.*`` module imports with ``torch`` and ``train`` unimportable (the runtime is torch-free:
  a user's install has neither), and so does every module of ``engines`` and ``synth`` (the runtime
  imports them; their package docstrings promise it);
* ``engines`` never imports ``stream`` (the engines know nothing about video or ZeroMQ): no import
  statement names it, and importing every ``engines`` module leaves it out of ``sys.modules``;
* no import cycle among the modules of ``stream``, ``engines`` and ``synth`` (module-level imports, the
  ones that run at import time; imports inside functions and under ``if TYPE_CHECKING:`` are left out).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("stream", "engines", "synth")
BLOCKED = ("torch", "train")

# Run in a fresh interpreter: a meta-path finder that refuses torch and train comes first, then every
# engines module is imported (and sys.modules looked at for stream), then every stream module.
_PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, traceback

    BLOCKED = {blocked!r}
    preloaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"import of {{name!r}} refused: the runtime packages must not need it")
            return None

    sys.meta_path.insert(0, Refuse())
    sys.path.insert(0, {repo!r})

    def walk(package):
        names, errors = [package], {{}}
        def failed(name):
            errors[name] = traceback.format_exc(limit=-3)
        pkg = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".", onerror=failed)]
        for name in names:
            if name in errors:
                continue
            try:
                importlib.import_module(name)
            except BaseException:
                errors[name] = traceback.format_exc(limit=-3)
        return names, errors

    engines_names, engines_errors = walk("engines")
    stream_after_engines = sorted(m for m in sys.modules if m == "stream" or m.startswith("stream."))
    synth_names, synth_errors = walk("synth")
    stream_names, stream_errors = walk("stream")
    refused = []
    for name in BLOCKED:
        try:
            importlib.import_module(name)
        except ImportError:
            refused.append(name)
    print(json.dumps({{
        "refused": refused,
        "preloaded": preloaded,
        "engines": engines_names, "engines_errors": engines_errors,
        "stream_after_engines": stream_after_engines,
        "synth": synth_names, "synth_errors": synth_errors,
        "stream": stream_names, "stream_errors": stream_errors,
        "blocked_loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }}))
    """
)


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    code = _PROBE.format(blocked=BLOCKED, repo=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"the import probe itself failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["preloaded"], f"imported before the probe could refuse them: {result['preloaded']}"
    assert result["refused"] == list(BLOCKED), result["refused"]  # the probe does refuse them
    return result


def _report(errors: dict[str, str]) -> str:
    return "\n".join(f"--- {name}\n{tb}" for name, tb in sorted(errors.items()))


def test_every_stream_module_imports_without_torch_or_train(probe: dict[str, Any]) -> None:
    assert len(probe["stream"]) > 10, probe["stream"]  # the walk found the package's modules
    assert not probe["stream_errors"], (
        f"stream modules that do not import with {BLOCKED} unimportable:\n" + _report(probe["stream_errors"])
    )
    assert not probe["blocked_loaded"], probe["blocked_loaded"]


def test_every_synth_module_imports_without_torch_or_train(probe: dict[str, Any]) -> None:
    assert len(probe["synth"]) > 3, probe["synth"]
    errors = probe["synth_errors"]
    assert not errors, f"synth modules that do not import with {BLOCKED} unimportable:\n" + _report(errors)


def test_every_engines_module_imports_without_stream(probe: dict[str, Any]) -> None:
    assert len(probe["engines"]) > 5, probe["engines"]
    errors = probe["engines_errors"]
    assert not errors, f"engines modules that do not import with {BLOCKED} unimportable:\n" + _report(errors)
    assert not probe["stream_after_engines"], (
        f"importing engines pulled in {probe['stream_after_engines']}: engines must not import stream"
    )


# ------------------------------------------------------------------------------------------------- static
def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in RUNTIME_PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], top_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of ``body``; with ``top_level_only`` those that run when the module is imported
    (module body, if/try/with/class blocks), not those in functions or under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not top_level_only:
                yield from _import_nodes(node.body, top_level_only)
        elif isinstance(node, ast.If) and top_level_only and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, top_level_only)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _import_nodes([child], top_level_only)
                elif isinstance(child, ast.excepthandler):
                    yield from _import_nodes(child.body, top_level_only)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Absolute names ``node`` imports: the deepest known module each names (a ``from X import name``
    that is not a submodule imports X itself)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in known else base)
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps: set[str] = set()
        for node in _import_nodes(tree.body, top_level_only):
            for target in _imported(node, name, path.name == "__init__.py", known):
                while target and target not in known:  # import a.b.c of a non-module name: nearest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _all_imports(path: Path) -> set[str]:
    """Every absolute module name any import statement in ``path`` names (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    return {t for node in _import_nodes(tree.body, top_level_only=False)
            for t in _imported(node, name, path.name == "__init__.py", set())}


def test_engines_never_imports_stream() -> None:
    offenders = {}
    for path in sorted((REPO / "engines").rglob("*.py")):
        names = sorted(t for t in _all_imports(path) if t == "stream" or t.startswith("stream."))
        if names:
            offenders[str(path.relative_to(REPO))] = names
    assert not offenders, f"engines must not import stream: {offenders}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as [a, b, ..., a]) of ``graph``, or None; iterative depth-first search."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_resolves_relative_and_from_imports() -> None:
    graph = _graph(top_level_only=True)
    assert "synth.clip" in graph["synth"]  # from .clip import ...
    assert "engines.loader" in graph["engines"]  # from engines.loader import ...


def test_no_import_cycles() -> None:
    graph = _graph(top_level_only=True)
    cycle = _find_cycle(graph)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])
