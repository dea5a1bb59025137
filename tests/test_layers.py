"""The layer boundaries: core/ is a library that never imports streamlit, and its imports point one way."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

CORE = ROOT / "core"


def test_no_core_module_names_streamlit():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert offenders == []


def test_importing_all_of_core_loads_no_streamlit():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in CORE.rglob("*.py")
                     if p.stem not in ("__init__", "__main__"))
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'streamlit'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- the one-way house (../shared/architecture.md): imports read as text, lazy ones and subpackages included ------
# Each layer may import the layers above it and its own (without a circle); never one below it.
LAYERS = (
    ("foundation", ("errors", "naming", "tracking", "progress", "settings", "auth", "paths", "metrics", "packing",
                    "speed", "hub", "tokenizer", "data", "holdout", "topic_pairs", "grid", "hyperparameter_sets",
                    "demo", "pretrained_demo", "team", "faults", "jobkind")),
    ("reading runs", ("runs", "runs_cache", "compare", "charts")),
    ("models", ("models",)),
    ("examples", ("examples",)),
    ("training, scoring and the registry", ("training", "scoring", "registry",
                                            "model_selector", "model_transition")),  # the seed's paths to registry
    ("experiment manager", ("experiment_manager",)),
    ("jobs", ("jobs",)),
    ("entry points", ("cli", "jobs_cli", "worker", "train_job", "__main__")),
)
# Arrows that point down the layers or close a circle, allowed while core/ moved into its layers (issue 18); it is
# empty now and must stay so.
ALLOWED: set[tuple[str, str]] = set()


def core_imports() -> dict[str, dict[str, list[int]]]:
    """{module: {imported core module: [lines]}} for every module of core/, read as text."""
    known = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        known[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, list[int]]] = {m: {} for m in known}
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] == "core" else None
                if target and target != module and not module.startswith(target + "."):
                    graph[module].setdefault(target, []).append(node.lineno)
    return graph


def layer_of(module: str) -> int:
    name = module.removeprefix("core.")
    for rank, (_, members) in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")


def circles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Groups of modules that import one another in a circle (strongly connected, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_core_has_no_import_circle():
    graph = core_imports()
    for a, b in ALLOWED:
        graph[a].pop(b, None)
    described = [" <-> ".join(group) + ": " + "; ".join(f"{a} -> {b} (line {graph[a][b][0]})" for a in group
                                                         for b in graph[a] if b in group)
                 for group in circles(graph)]
    assert described == []


def test_every_import_points_up_the_layers():
    graph = core_imports()
    wrong = sorted((a, b) for a, targets in graph.items() for b in targets
                   if b != "core" and layer_of(a) < layer_of(b) and (a, b) not in ALLOWED)
    assert [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]}), line {graph[a][b][0]}"
            for a, b in wrong] == []


def test_the_allowed_exceptions_only_shrink():
    graph = core_imports()
    stale = sorted((a, b) for a, b in ALLOWED if b not in graph.get(a, {}))
    assert stale == [], "these arrows are gone: remove them from ALLOWED"


# A core module imported inside a function hides an arrow until that path runs. Only the entry points do it (each
# command loads what it needs), and these, for the reason given.
LAZY = {
    ("core.training.kind", "core.training.run"): "torch and transformers load in a job's process (or its spare)",
}


def test_core_modules_are_imported_at_the_top_but_by_entry_points():
    entry = LAYERS[-1][1]
    found = []
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module.removeprefix("core.") in entry:
            continue
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                found += [(module, name, node.lineno) for name in names
                          if name.split(".")[0] == "core" and (module, name) not in LAZY]
    assert found == []
