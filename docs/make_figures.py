"""Generate the figures and the printed outputs shown in the documentation.

Usage (from the repository root)::

    python docs/make_figures.py                      # every page with generated content
    python docs/make_figures.py getting-started.md   # only these pages

The pages' own code makes the figures and the printed output, so the site shows exactly what
its examples produce. The ```python blocks of each page run in order, in one namespace, in a
fresh temporary directory (matplotlib's Agg backend):

- a figure the page saves there (``fig.savefig("sleepstudy_trace.png")``) is copied to
  ``docs/img/``, where the page shows it (``![...](img/sleepstudy_trace.png)``);
- when the next fenced block after a python block is a text block that only includes a
  generated file::

      ```text
      --8<-- "docs/generated/getting-started/model.txt"
      ```

  the python block's printed output is written to that file, which ``pymdownx.snippets``
  includes when the site is built.

A python block preceded by the line ``<!-- skip -->`` is not run (it is illustrative only,
e.g. another package's code). ``tests/test_docs.py`` runs the same blocks, with the same
rules (it imports :func:`code_blocks` from here), so the examples cannot rot.

The sampler is seeded, so a rerun on the same machine and versions reproduces the outputs;
other platforms may differ in the last digits of the MCMC summaries. ``tests/test_docs.py``
compares what every block prints now with the committed file (:func:`stale_outputs`), up to
the few parts that change from run to run by nature (:data:`VARYING`), so the shown outputs
cannot go stale. Seeded MCMC output repeats only with the same CPU and package versions, which
``docs/generated/platform.json`` records when the outputs are written (the CPU's name and its
vector instruction sets: two CPUs of one name may differ in those, and XLA's code with them):
on another platform the comparison ignores what depends on the draws (:func:`mask_numbers`)
and checks everything else.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMG = DOCS / "img"
#: Where the platform that wrote the outputs is recorded (:func:`platform_fingerprint`).
PLATFORM = DOCS / "generated" / "platform.json"
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: A fit's convergence verdict: which checks fail, and where, depends on the draws.
_VERDICT = re.compile(r"^(Convergence:).*?(?=^\s*$|\Z)", re.MULTILINE | re.DOTALL)
#: CPU features that XLA's generated code and its kernels depend on.
_ISA = re.compile(r"^(?:avx\w*|fma\w*|amx\w*|sse\w*|f16c)$")

SKIP = "<!-- skip -->"
#: Terminal width the pages' code sees (``COLUMNS``): printed tables wrap at it
#: (:func:`lmmhmc.results.format_table`), so the outputs do not depend on the terminal.
COLUMNS = 120
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_SNIPPET = re.compile(r'^--8<--\s+"(?P<path>docs/generated/[^"]+)"$')

#: Printed parts that differ between two runs of the same code by nature, with what
#: :func:`normalise` replaces them by before outputs are compared: ArviZ stamps the time an
#: InferenceData was created (``print(res.idata.posterior)`` shows it).
VARYING = [
    (re.compile(r"^(?P<lead>\s*created_at:\s+)\S+$", re.MULTILINE), r"\g<lead><timestamp>"),
]


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page.

    Attributes
    ----------
    lang : str
        The first word of the fence's info string (``"python"``, ``"text"``, ...).
    code : str
        Its content, dedented to the fence's indentation.
    line : int
        Line number (1-based) of the opening fence.
    skip : bool
        Preceded by ``<!-- skip -->``.
    output : str or None
        For a python block: the generated file (relative to the repository root) that the
        following text block includes, i.e. where its printed output goes.
    """

    lang: str
    code: str
    line: int
    skip: bool
    output: str | None = None


def code_blocks(text: str) -> list[Block]:
    """All fenced code blocks of a Markdown page, in order (indented ones included)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        lang = (m.group("info").split() or [""])[0].lower()
        body, j = [], i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (close and close.group("fence")[0] == fence[0]
                    and len(close.group("fence")) >= len(fence) and not close.group("info")):
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        blocks.append(Block(lang, "\n".join(body) + "\n", i + 1, previous == SKIP))
        i = j + 1
    out = []
    for k, b in enumerate(blocks):
        target = None
        if b.lang == "python" and k + 1 < len(blocks) and blocks[k + 1].lang == "text":
            m = _SNIPPET.match(blocks[k + 1].code.strip())
            target = m.group("path") if m else None
        out.append(Block(b.lang, b.code, b.line, b.skip, target))
    return out


def runnable(page: Path) -> list[Block]:
    """The python blocks of ``page`` that are run (not marked ``<!-- skip -->``)."""
    return [b for b in code_blocks(page.read_text(encoding="utf-8"))
            if b.lang == "python" and not b.skip]


def run_page(page: Path, workdir: Path, capture: bool = True) -> dict[str, str]:
    """Run the page's python blocks in one namespace with ``workdir`` as current directory.

    Returns the printed output of each block that has an ``output`` target, by target. The
    blocks see a terminal :data:`COLUMNS` characters wide.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    outputs: dict[str, str] = {}
    cwd, columns = Path.cwd(), os.environ.get("COLUMNS")
    os.chdir(workdir)
    os.environ["COLUMNS"] = str(COLUMNS)
    try:
        for block in runnable(page):
            code = compile(block.code, f"{page.name}:{block.line}", "exec")
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
                    exec(code, namespace)  # noqa: S102  (the documentation's own examples)
            except BaseException:
                sys.stdout.write(buffer.getvalue())  # what the failing block printed
                raise
            if block.output:
                outputs[block.output] = buffer.getvalue().rstrip() + "\n"
    finally:
        os.chdir(cwd)
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
        plt.close("all")
    return outputs


def normalise(text: str) -> str:
    """``text`` with the parts that vary between runs (:data:`VARYING`) replaced."""
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


def platform_fingerprint() -> dict[str, str]:
    """The CPU and the package versions that seeded MCMC output depends on."""
    from importlib import metadata

    cpu, isa = platform.processor() or platform.machine(), ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        names = re.findall(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        flags = re.findall(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        cpu = names[0] if names else cpu
        isa = " ".join(sorted(f for f in (flags[0].split() if flags else [])
                              if _ISA.match(f)))
    return {"cpu": cpu, "isa": isa, **{name: metadata.version(name)
                                       for name in ("jax", "jaxlib", "numpyro", "numpy",
                                                    "arviz")}}


def mask_numbers(text: str) -> str:
    """``text`` with every number replaced by ``#``, a fit's convergence verdict by
    ``Convergence: #`` and every run of white space by one space (table columns widen with
    their numbers, lines wrap at other places, and xarray cuts values short before or after a
    space: ``-0.06...``, ``-0.5 ...``)."""
    masked = _NUMBER.sub("#", _VERDICT.sub(r"\1 #\n", text))
    return re.sub(r"\s+", " ", re.sub(r"\s*\.\.\.", " ...", masked))


def stale_outputs(outputs: dict[str, str], exact: bool | None = None) -> dict[str, str]:
    """The outputs of :func:`run_page` that differ from the committed files, as diffs.

    Parameters
    ----------
    outputs : dict
        Printed output by target file (relative to the repository root).
    exact : bool, optional
        Compare the numbers too; by default when this platform is the one recorded in
        :data:`PLATFORM` (elsewhere seeded MCMC draws differ), else compare with the numbers
        masked (:func:`mask_numbers`).

    Returns
    -------
    dict
        By target: a unified diff from the committed file to the output now (both
        normalised, see :func:`normalise`); a missing file differs from any output. Empty when
        every committed file is up to date.
    """
    if exact is None:
        recorded = json.loads(PLATFORM.read_text()) if PLATFORM.is_file() else None
        exact = recorded == platform_fingerprint()
    stale = {}
    for target, text in outputs.items():
        path = ROOT / target
        committed = path.read_text(encoding="utf-8") if path.is_file() else ""
        old, new = normalise(committed), normalise(text)
        if not exact:
            old, new = mask_numbers(old), mask_numbers(new)
        if old != new:
            stale[target] = "".join(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile=f"{target} (committed)", tofile=f"{target} (printed now)"))
    return stale


def generated_pages() -> list[Path]:
    """Pages that include generated output or show figures from ``docs/img/``."""
    return [p for p in sorted(DOCS.glob("*.md"))
            if '--8<-- "docs/generated/' in (text := p.read_text(encoding="utf-8"))
            or "](img/" in text]


def main(argv: list[str]) -> int:
    pages = [DOCS / name for name in argv] if argv else generated_pages()
    IMG.mkdir(exist_ok=True)
    for page in pages:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            outputs = run_page(page, Path(tmp))
            figures = sorted(Path(tmp).glob("*.png"))
            for fig in figures:
                shutil.copy(fig, IMG / fig.name)
        for target, text in outputs.items():
            path = ROOT / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        print(f"{page.name}: {len(outputs)} outputs, {len(figures)} figures "
              f"({time.perf_counter() - t0:.0f} s)")
    PLATFORM.write_text(json.dumps(platform_fingerprint(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
