"""MkDocs hooks of the documentation site (registered in ``mkdocs.yml``).

- ``<!-- benchmark: NAME.md -->`` in a page is replaced by ``benchmarks/results/NAME.md``, the
  table a benchmark script writes, with its headings moved two levels down and its relative
  links (plots, JSON) pointing at the files next to it, which are copied into the site; a
  missing file becomes a one-line note saying which script generates it, so the site builds
  before any benchmark has run. ``<!-- benchmark: others -->`` includes every other ``*.md``
  there, under the heading "Other results". In table rows, ``\\|`` inside code spans (GitHub's
  escape) becomes ``|`` (Python-Markdown's tables need no escape there).
- In printed output (```` ```text ```` blocks), the lines laid out in columns (tables, aligned
  lists) are marked ``<span class="columns">``: ``docs/stylesheets/extra.css`` wraps the other
  lines (a long plan or error message) at the page's width and scrolls those sideways, so that a
  table keeps its columns.
- ``results.md`` (written separately) is replaced by a short placeholder page while it does not
  exist, so that the navigation stays valid in ``--strict`` builds.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.lmmhmc")

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
# `[ \t]*$`, not `\s*$`: the marker must not swallow the blank line after it, or the next
# heading would continue the table the marker expands to.
MARKER = re.compile(r"^<!--[ \t]*benchmark:[ \t]*(\S+)[ \t]*-->[ \t]*$", re.MULTILINE)
HEADING = re.compile(r"^(#{1,4})(\s)")
CODE_SPAN = re.compile(r"`[^`]*`")
# A relative Markdown link or image target: not a URL, an anchor or an absolute path.
LINK = re.compile(r"(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)")
SITE_DIR = "benchmarks/results"
FENCE = re.compile(r"^\s*(```|~~~)")

RESULTS_PLACEHOLDER = """# Results & prediction

This page describes `FitResult`: summaries, random effects, prediction, plots and saving.
It has not been written yet; see the API reference of
[`FitResult`](api.md#lmmhmc.results.FitResult) meanwhile.
"""


def on_files(files, config):
    """Add the benchmark results' files (plots, JSON) and, if needed, a ``results.md``."""
    if files.get_file_from_path("results.md") is None:
        log.info("docs/results.md is missing: using a placeholder page")
        files.append(File.generated(config, "results.md", content=RESULTS_PLACEHOLDER))
    if RESULTS_DIR.is_dir():
        for path in sorted(RESULTS_DIR.iterdir()):
            if path.is_file() and path.suffix != ".md":
                files.append(File.generated(config, f"{SITE_DIR}/{path.name}",
                                            abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Expand the ``<!-- benchmark: ... -->`` markers."""
    names = MARKER.findall(markdown)
    if not names:
        return markdown
    named = {n for n in names if n != "others"}

    def expand(match: re.Match) -> str:
        name = match.group(1)
        if name == "others":
            rest = sorted(p for p in RESULTS_DIR.glob("*.md") if p.name not in named)
            if not rest:
                return ""
            return "\n\n".join(["## Other results"]
                                + [_adapt(p.read_text(encoding="utf-8")) for p in rest])
        path = RESULTS_DIR / name
        if path.is_file():
            return _adapt(path.read_text(encoding="utf-8"))
        script = f"benchmarks/{Path(name).stem}.py"
        return (f"*Not generated yet: `python {script}` writes this table to "
                f"`benchmarks/results/{name}`.*")

    # Blank lines around what is inserted: a table must end before the page's next heading.
    return MARKER.sub(lambda m: f"\n{expand(m).strip()}\n", markdown)


TEXT_BLOCK = re.compile(r'(<div class="language-text highlight"><pre><span></span><code>)(.*?)'
                        r"(</code></pre></div>)", re.DOTALL)
# Two or more spaces after the line's first non-blank character: a line laid out in columns.
COLUMNS = re.compile(r"\S.*? {2,}\S")


def on_page_content(html, page, config, files):
    """Mark the lines laid out in columns in printed output (see the module docstring)."""

    def mark(match: re.Match) -> str:
        lines = [f'<span class="columns">{line}</span>' if COLUMNS.search(line) else line
                 for line in match.group(2).split("\n")]
        return match.group(1) + "\n".join(lines) + match.group(3)

    return TEXT_BLOCK.sub(mark, html)


def _adapt(text: str) -> str:
    """Outside code fences: headings two levels down, relative links into ``SITE_DIR``,
    unescaped pipes in the code spans of table rows."""
    out, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            line = HEADING.sub(lambda m: "##" + m.group(1) + m.group(2), line)
            line = LINK.sub(lambda m: f"{m.group(1)}{SITE_DIR}/{m.group(2)}", line)
            if line.lstrip().startswith("|"):
                line = CODE_SPAN.sub(lambda m: m.group(0).replace("\\|", "|"), line)
        out.append(line)
    return "\n".join(out)
