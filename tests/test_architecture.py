"""The package's structure: no import cycles, one home per name, one kernel per fit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CROSSED_FORMULA, FIT_SETTINGS, simulate_crossed

import lmmhmc
import lmmhmc.assembled
from lmmhmc.datasets import load

PACKAGE = Path(lmmhmc.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """lmmhmc module -> the lmmhmc modules it imports, at module level or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # "from lmmhmc import datasets" imports the submodule
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    graph = import_graph()
    # the walk sees imports inside functions too (e.g. Model.fit's import of lmmhmc.fitting)
    assert "lmmhmc.fitting" in graph["lmmhmc.model"]
    assert "lmmhmc.results" in graph["lmmhmc.fitting"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_parameter_names_are_spelled_in_the_layout_alone():
    """``grep -rn '_sigma"' lmmhmc/`` finds the layout module only."""
    out = subprocess.run(["grep", "-rln", '_sigma"', str(PACKAGE)], capture_output=True,
                         text=True)
    assert [Path(p).name for p in out.stdout.split()] == ["layout.py"]
    for spelled in ('"_offset"', "__factor_dim", "_corr{", "tril_indices"):
        out = subprocess.run(["grep", "-rln", spelled, str(PACKAGE)], capture_output=True,
                             text=True)
        assert {Path(p).name for p in out.stdout.split()} <= {"layout.py"}, spelled


@pytest.fixture
def count_preparations(monkeypatch):
    """Count the calls of the kernel preparation made while assembling models."""
    calls = []
    prepare = lmmhmc.assembled.prepare

    def counted(*args, **kwargs):
        calls.append(kwargs.get("elimination", args[2] if len(args) > 2 else None))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(lmmhmc.assembled, "prepare", counted)
    return calls


def test_one_kernel_preparation_per_fit(count_preparations):
    """Every term marginalized: the ML start, the sampler and recovery share one kernel,
    prepared once in the plan's elimination order."""
    res = lmmhmc.fit(CROSSED_FORMULA, simulate_crossed(), seed=2, **FIT_SETTINGS)
    assert res.plan.marginalized == (0, 1)
    assert count_preparations == [res.plan.elimination]
    assembled = res.assembled
    assert assembled.kernel is assembled.ml_kernel
    assert assembled.kernel.static.order == res.plan.elimination.order
    assert assembled.kernel.static.n_diag == res.plan.elimination.n_diag


def test_partial_plan_prepares_the_profiled_kernel_too(count_preparations):
    """With a sampled term the sampler's kernel has fewer terms than the one ML profiles:
    two preparations, each in the order the plan chose for it."""
    model = lmmhmc.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
                         load("sleepstudy"))
    res = model.fit(marginalize=["1 | Subject"], **FIT_SETTINGS)
    assert res.plan.marginalized == (0,)
    assert len(count_preparations) == 2
    assert count_preparations[1] == res.plan.elimination
    assert res.assembled.kernel.static.order == res.plan.elimination.order


def _top_level_imports(path: Path) -> list[str]:
    """The modules a file imports at module level, in order (relative ones as ``.name``)."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names += [f"{base}{a.name}" if base == "." else base for a in node.names]
    return names


def test_every_module_that_imports_jax_switches_on_float64_first():
    """A module that imports jax or numpyro at module level imports ``lmmhmc._x64`` too, so
    that float64 is on before any lmmhmc code creates a JAX array; the switch is made there
    only."""
    users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        imports = _top_level_imports(path)
        if any(m.split(".")[0] in ("jax", "numpyro") for m in imports) and path.name != "_x64.py":
            users.append(path.name)
            assert "._x64" in imports or "lmmhmc._x64" in imports, path.name
    assert {"marginal.py", "chains.py", "numpyro_model.py", "runtime.py"} <= set(users)
    out = subprocess.run(["grep", "-rln", "--include=*.py", 'update("jax_enable_x64"',
                          str(PACKAGE)], capture_output=True, text=True)
    assert [Path(p).name for p in out.stdout.split()] == ["_x64.py"]


def test_the_command_line_and_the_design_do_not_import_jax():
    """``lmmhmc --help``, ``datasets`` and ``describe`` (a Model: formula and data) run without
    JAX, NumPyro, ArviZ or matplotlib; a fit switches JAX to float64."""
    code = """
import contextlib, io, sys
import lmmhmc.cli
with contextlib.redirect_stdout(io.StringIO()):
    for argv in (["--help"], ["fit", "--help"]):
        try:
            lmmhmc.cli.main(argv)
        except SystemExit:
            pass
    lmmhmc.cli.main(["datasets"])
    lmmhmc.cli.main(["describe", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"])
heavy = {m.split(".")[0] for m in sys.modules} & {"jax", "numpyro", "arviz", "matplotlib"}
assert not heavy, heavy
import lmmhmc
lmmhmc.Model("Reaction ~ Days + (Days | Subject)", lmmhmc.datasets.load("sleepstudy"))
assert "jax" not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr


def test_public_names_load_on_first_use():
    """Every name of ``lmmhmc.__all__`` (and every submodule) resolves; others do not."""
    for name in lmmhmc.__all__:
        assert getattr(lmmhmc, name) is not None
    assert set(lmmhmc.__all__) <= set(dir(lmmhmc))
    assert lmmhmc.plots.__name__ == "lmmhmc.plots"
    assert lmmhmc.Model is lmmhmc.model.Model and lmmhmc.load is lmmhmc.io.load
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lmmhmc.nothing  # noqa: B018
