"""Check the house rules of ``ssdiff_cli``: imports run one way and rooms stay small.

Reads every module's imports (including those inside functions) with :mod:`ast`, reports every
import cycle among ``ssdiff_cli`` modules, every import that runs uphill (the tiers: the CLI on
top, then orchestration (pipeline, evaluate, training, batch), then methods, then the rooms below
them (scene, tiling, engine, executors, output, quality, zoo, diffusion, nn, ...), then errors),
and every module over ``MAX_LINES`` lines. Exit 1 when any is found. Run:
``python scripts/check_house.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 600
PACKAGE = "ssdiff_cli"


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a file under ``root`` (the folder holding the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """``ssdiff_cli`` modules that ``path`` imports anywhere (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            # the longest known module that the import names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith(PACKAGE):
                found.add(target)
    return found


def tier(name: str) -> int:
    """The module's floor in the house: 5 CLI, 4 orchestration, 3 methods, 2 rooms, 1 errors."""
    short = name.removeprefix(PACKAGE).lstrip(".")
    top = short.split(".")[0]
    if top in ("", "__main__", "cli"):
        return 5
    if top in ("pipeline", "evaluate", "training", "batch"):
        return 4
    if top == "methods":
        return 3
    return 1 if top == "errors" else 2


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    files = sorted((root / PACKAGE).rglob("*.py"))
    names = {module_name(f, root): f for f in files}
    modules = set(names)
    graph = {}
    for name, path in names.items():
        deps = imports_of(path, name, modules)
        # importing a package's submodule runs the package's __init__: not a cycle by itself
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    bad = 0
    for comp in cycles(graph):
        bad += 1
        print(f"import cycle: {' <-> '.join(comp)}")
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if tier(dep) > tier(name):
                bad += 1
                print(f"uphill import: {name} -> {dep}")
    for path in sorted(names.values()):
        n = sum(1 for _ in path.open(encoding="utf-8"))
        if n > MAX_LINES:
            bad += 1
            print(f"too long: {path.relative_to(root)} has {n} lines (> {MAX_LINES})")
    print("house: ok" if not bad else f"house: {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
