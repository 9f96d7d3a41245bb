"""The package's structure: no import cycles, one home per name, one kernel per fit."""

from __future__ import annotations

import ast
import subprocess
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
