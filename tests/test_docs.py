"""The documentation cannot rot: its examples run, and the site builds with ``--strict``.

Every ```python block of every page in ``docs/`` runs, page by page, in one namespace per page
(in a temporary directory, matplotlib's Agg backend), with the rules of
``docs/make_figures.py`` (which generates the figures and printed outputs the pages show): a
block preceded by ``<!-- skip -->`` is illustrative and not run. The examples use small
sampler settings (2 chains x 200 draws, those of ``tests/conftest.py``), so the pages share
one compiled sampler with each other and with the other tests. What a block prints must be what
the page shows: the committed ``docs/generated/`` file its next text block includes (up to the
parts that vary between runs by nature, ``make_figures.VARYING``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
make_figures = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_figures", make_figures)  # dataclasses look their module up
_spec.loader.exec_module(make_figures)

PAGES = sorted(DOCS.glob("*.md"))

_SNIPPET = re.compile(r'--8<--\s+"(docs/generated/[^"]+)"')


@pytest.mark.filterwarnings("ignore:.*missing values.*dropped:UserWarning")  # formula.md shows it
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    outputs = make_figures.run_page(page, tmp_path, capture=True)
    stale = make_figures.stale_outputs(outputs)
    assert not stale, (
        f"{len(stale)} printed output(s) of {page.name} differ from the committed files; "
        f"run python docs/make_figures.py {page.name} (seeded MCMC output is reproducible only "
        "with the same CPU and package versions)\n" + "\n".join(stale.values()))


def test_stale_outputs_show_a_diff_and_ignore_only_the_timestamp() -> None:
    target = "docs/generated/getting-started/idata.txt"
    committed = (ROOT / target).read_text(encoding="utf-8")
    assert make_figures.stale_outputs({target: committed}, exact=True) == {}
    stamped = re.sub(r"created_at:\s+\S+", "created_at:     2031-01-01T00:00:00.5+00:00", committed)
    assert stamped != committed  # the file shows a time stamp ...
    assert make_figures.stale_outputs({target: stamped}, exact=True) == {}  # ... may differ
    changed = committed.replace("arviz_version:  ", "arviz_version:  9")
    assert changed != committed
    diff = make_figures.stale_outputs({target: changed}, exact=True)[target]
    assert "-    arviz_version:  0" in diff and "+    arviz_version:  90" in diff
    # on another platform the numbers are masked, the rest is still compared
    assert make_figures.stale_outputs({target: changed}, exact=False) == {}
    renamed = committed.replace("Dimensions", "Dims", 1)
    assert make_figures.stale_outputs({target: renamed}, exact=False)
    assert make_figures.normalise("x created_at: 1\n") == "x created_at: 1\n"  # narrow
    missing = "docs/generated/no-such-page/out.txt"
    assert make_figures.stale_outputs({missing: "1\n"}, exact=True)[missing].endswith("+1\n")
    assert make_figures.mask_numbers("a  1.5e-3   -2 x1") == "a # # x#"


def test_code_block_parser() -> None:
    text = "\n".join([
        "```python", "a = 1", "```",
        "```text", '--8<-- "docs/generated/x/a.txt"', "```",
        "<!-- skip -->", "```python", "import bambi", "```",
        '=== "tab"', "", "    ```python", "    b = 2", "    ```",
    ])
    blocks = make_figures.code_blocks(text)
    assert [(b.lang, b.skip) for b in blocks] == [
        ("python", False), ("text", False), ("python", True), ("python", False)]
    assert blocks[0].output == "docs/generated/x/a.txt" and blocks[0].code == "a = 1\n"
    assert blocks[3].code == "b = 2\n" and blocks[3].output is None


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_generated_outputs_have_their_code(page: Path) -> None:
    """Every included output file directly follows the python block that prints it."""
    text = page.read_text(encoding="utf-8")
    included = set(_SNIPPET.findall(text))
    produced = {b.output for b in make_figures.runnable(page) if b.output}
    assert included == produced, "included output without a python block just before it"
    for target in included:
        assert (ROOT / target).is_file(), f"{target} is missing: run python docs/make_figures.py"
    for image in re.findall(r"\]\((img/[^)]+)\)", text):
        assert (DOCS / image).is_file(), f"{image} is missing: run python docs/make_figures.py"


def test_site_builds_strict(tmp_path: Path) -> None:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]' or '.[test]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ["lmmhmc.fit", "lmmhmc.Model", "lmmhmc.results.FitResult", "lmmhmc.ml.fit_ml",
                 "lmmhmc.marginal.prepare", "lmmhmc.plan.make_plan",
                 "lmmhmc.priors.default_priors"]:
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    bench = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "<!-- benchmark:" not in bench
    for name in ["design", "kernels", "fit", "paper"]:
        generated = (ROOT / "benchmarks" / "results" / f"{name}.md").is_file()
        assert generated or f"benchmarks/results/{name}.md" in bench
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Changelog" in changelog
