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
    # elsewhere the draws decide which convergence checks fail, where lines wrap and where
    # xarray cuts a value short; the rest must still match
    verdict = ("Convergence: max R-hat 1.02 (at 'a'): run longer chains\n  (more)\n\n"
               "Fixed effects:\n  b  -0.06...")
    other = "Convergence: max R-hat 1.001\n\nFixed effects:\n  b -0.5 ..."
    assert make_figures.mask_numbers(verdict) == make_figures.mask_numbers(other)
    assert make_figures.mask_numbers(verdict) != make_figures.mask_numbers(
        other.replace("Fixed", "Random"))


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
    pages = {path.relative_to(site).as_posix(): path.read_text(encoding="utf-8")
             for path in sorted(site.rglob("*.html"))}
    for name, html in pages.items():
        assert not site_problems(html), f"{name}: {site_problems(html)}"
    toc = re.findall(r'class="md-nav__link">\s*<span class="md-ellipsis">\s*([^<]*?)\s*</span>',
                     bench)
    for heading in ["The paper's data sets", "Scaling with N", "InstEval", "Other results"]:
        assert any(heading in entry.replace("&#39;", "'") for entry in toc), \
            f"{heading!r} missing from the benchmarks page's table of contents"
    for script in re.findall(r'<script[^>]*src="([^"]+)"', "".join(pages.values())):
        assert not re.match(r"(https?:)?//", script), f"{script}: the site must work offline"
    assert (site / "javascripts" / "mathjax" / "tex-svg.js").is_file()


#: What must not appear in a built page: Sphinx roles that mkdocstrings does not resolve, the
#: hooks' note for a benchmark table not generated, and a Markdown heading swallowed by a table.
_SPHINX_ROLE = re.compile(r":(class|func|meth|mod|data|attr|obj|exc|ref):`")
_PLACEHOLDER = "Not generated yet"
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.DOTALL)
_NOT_TEXT = re.compile(r"<(script|style|pre|code)\b.*?</\1>", re.DOTALL)


def site_problems(html: str) -> list[str]:
    """The problems of one built page (empty when it is fine)."""
    problems = [f"raw Sphinx role {m.group(0)!r}" for m in _SPHINX_ROLE.finditer(html)]
    if _PLACEHOLDER in html:
        problems.append(f"placeholder {_PLACEHOLDER!r}")
    problems += [f"heading inside a table cell: {cell.strip()[:60]!r}"
                 for cell in _CELL.findall(html) if re.match(r"\s*#{1,6} ", cell)]
    # arithmatex turns $...$ into \(...\); a $ left in the text is TeX it did not recognise
    # (e.g. "$p + 1 + $": no space may follow the opening $ or precede the closing one).
    text = re.sub(r"<[^>]+>", "", _NOT_TEXT.sub("", html))
    problems += [f"untypeset math near {text[max(0, m.start() - 30):m.start() + 30]!r}"
                 for m in re.finditer(r"\$", text)]
    return problems


def test_site_problems_are_found() -> None:
    assert site_problems("<p>See <code>Model</code>.</p><table><tr><td>## x</td></tr></table>") \
        == ["heading inside a table cell: '## x'"]
    assert site_problems("<p>:class:`Model`</p>") == ["raw Sphinx role ':class:`'"]
    assert site_problems("<em>Not generated yet: run it</em>")
    assert site_problems("<td>a ## b</td><h2>## c</h2>") == []
    assert site_problems("<td>$p + 1 + $ covariance parameters</td>")
    assert site_problems('<span class="arithmatex">\\(p\\)</span><code>$x</code>') == []


def test_benchmark_marker_keeps_the_next_heading_out_of_the_table(tmp_path: Path,
                                                                   monkeypatch) -> None:
    hooks = _load("hooks", DOCS / "hooks.py")
    markdown = pytest.importorskip("markdown")
    table = "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    for text in ["<!-- benchmark: t.md -->\n\n## Next\n", "<!-- benchmark: t.md -->\n## Next\n",
                 "Before.\n<!-- benchmark: t.md -->\n## Next\n"]:
        with monkeypatch.context() as m:
            m.setattr(hooks, "RESULTS_DIR", tmp_path)
            (tmp_path / "t.md").write_text(table)
            html = markdown.markdown(hooks.on_page_markdown(text, None, None, None),
                                     extensions=["tables"])
        assert "<h2>Next</h2>" in html and "<td>2</td>" in html, html
    missing = hooks.on_page_markdown("<!-- benchmark: nothing.md -->\n## Next\n", None, None,
                                     None)
    assert "<h2>Next</h2>" in markdown.markdown(missing)


def test_defaults_hidden_behind_names_are_documented() -> None:
    """A default given by a name (``HDI_PROB``, ``DEFAULTS.chains``) shows in the API page as
    that name; the docstring must state its value (``hdi_prob : float, default 0.94``)."""
    griffe = pytest.importorskip("griffe")
    import ast

    pkg = griffe.load("lmmhmc", search_paths=[str(ROOT)], docstring_parser="numpy")

    def functions(obj):
        for member in obj.members.values():
            if member.is_alias or (member.name.startswith("_") and member.name != "__init__"):
                continue
            if member.is_function:
                yield member
            elif member.is_class or member.is_module:
                yield from functions(member)

    import importlib

    checked = 0
    for func in functions(pkg):
        if not func.docstring:
            continue
        documented = {p.name: p for section in func.docstring.parsed
                      if section.kind.value == "parameters" for p in section.value}
        for param in func.parameters:
            doc = documented.get(param.name)
            if param.default is None or doc is None:
                continue
            try:
                ast.literal_eval(str(param.default))
                continue
            except (ValueError, SyntaxError):
                pass
            assert doc.value is not None and str(doc.value) != str(param.default), \
                f"{func.path}({param.name}): state the value of {param.default} in the docstring"
            module = importlib.import_module(func.module.path)
            runtime = eval(str(param.default), vars(module))  # noqa: S307 (our own names)
            assert ast.literal_eval(str(doc.value)) == runtime, \
                f"{func.path}({param.name}): the docstring says {doc.value}, the code {runtime!r}"
            checked += 1
    assert checked >= 10


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
