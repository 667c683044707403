"""The package's shape: an import graph without cycles, no private name crossing modules, training code that the
core never imports, and a runtime that loads neither torch nor scikit-learn."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import emovae

SRC = Path(emovae.__file__).resolve().parent
PACKAGE = "emovae"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module name of ``from <level dots><target> import ...`` written in module ``current``."""
    if level == 0:
        return target or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, str | None, int]]:
    """(imported emovae module, imported name or None, line) of every import in the file, at any depth (lazy
    imports inside functions count: they are arrows of the graph too)."""
    out = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            mod = resolve(name, is_package, node.level, node.module)
            if mod.split(".")[0] != PACKAGE:
                continue
            for a in node.names:  # ``from . import dsp`` imports the module emovae.dsp
                sub = f"{mod}.{a.name}"
                out.append((sub, None, node.lineno) if sub in known else (mod, a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {t for t, _, _ in imports(m, p, set(mods)) if t != m and t in mods} for m, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_and_lazy_imports():
    g = graph()
    assert "emovae.dsp" in g["emovae.features"]  # ``from . import dsp`` and ``from .dsp import ...``
    assert "emovae.network" in g["emovae.runtime"]  # imported inside Network.load
    assert "emovae.runtime" in g["emovae.train.estimator"]  # ``from ..runtime import Network``


def test_import_graph_has_no_cycles():
    assert find_cycle(graph()) is None


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    bad = [f"{p.relative_to(SRC.parent)}:{line}: {target}.{attr}"
           for m, p in mods.items() for target, attr, line in imports(m, p, set(mods))
           if attr is not None and attr.startswith("_") and not attr.startswith("__") and target != m]
    assert not bad, bad


def test_no_private_attribute_of_another_module_is_used():
    """``from . import x`` then ``x._helper``: the same private crossing, written differently."""
    mods = modules()
    bad = []
    for m, p in mods.items():
        tree = ast.parse(p.read_text(), str(p))
        aliases = {}  # local name -> emovae module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = resolve(m, p.name == "__init__.py", node.level, node.module)
                for a in node.names:
                    if f"{mod}.{a.name}" in mods:
                        aliases[a.asname or a.name] = f"{mod}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases[node.value.id] != m):
                bad.append(f"{p.relative_to(SRC.parent)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    assert not bad, bad


def test_the_core_never_imports_training_code():
    """train/ imports the core, never the reverse (the CLI, the shell over everything, may call into it)."""
    shells = {"emovae.cli", "emovae.__main__"}
    back = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets
                  if not m.startswith("emovae.train") and m not in shells and t.startswith("emovae.train"))
    assert not back, back


@pytest.mark.parametrize("module", ["emovae.runtime", "emovae.session", "emovae.stream"])
def test_runtime_modules_load_neither_torch_nor_sklearn_nor_training_code(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'librosa', "
            "'matplotlib') or m.startswith('emovae.train') or m == 'emovae.network'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_predicting_with_the_onnx_backend_loads_neither_torch_nor_sklearn(tiny_model_dir):
    code = ("import sys; import numpy as np; from emovae.runtime import Recognizer; "
            "r = Recognizer.load(sys.argv[1], backend='onnx'); t = np.arange(16000) / 16000; "
            "s = r.session(); [s.predict_signal((0.3 * np.sin(2 * np.pi * f * t)).astype('float32'), 16000) "
            "for f in (150, 200)]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'librosa') "
            "or m.startswith('emovae.train')))")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_cli_help_is_light():
    code = ("import sys, emovae.cli; emovae.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'librosa', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
