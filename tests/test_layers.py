"""The layer boundary: core/ is a library that never imports streamlit."""

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
    modules = sorted(f"core.{p.stem}" for p in CORE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'streamlit'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
