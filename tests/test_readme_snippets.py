"""Every ```python block of README.md runs as written (on CPU here; on an SM90
machine the snippets pick the GPU themselves).

A block may be exempted only by an HTML comment on the line right before its
fence (blank lines in between allowed):

    <!-- snippet: skip <why it cannot run in the test suite> -->

Use it sparingly: a block that needs something large (a model download, a
multi-process group) should rather be written with small self-contained
inputs. Blocks that import transformers are skipped (with the reason) where it
is not installed; CI installs it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"^<!--\s*snippet:\s*skip\s+(?P<reason>.*?)\s*-->$")


def python_blocks(text: str) -> list[dict]:
    """The ```python blocks of a markdown text: line number, code, skip reason (or None)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            assert j < len(lines), f"README.md line {start + 1}: unterminated ```python block"
            prev = start - 1
            while prev >= 0 and not lines[prev].strip():
                prev -= 1
            m = SKIP.match(lines[prev].strip()) if prev >= 0 else None
            blocks.append({"line": start + 1, "code": "\n".join(lines[start + 1:j]),
                           "skip": m.group("reason") if m else None})
            i = j
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_runnable_python_blocks():
    assert sum(b["skip"] is None for b in BLOCKS) > 0


def test_skip_marker_convention():
    text = ("# t\n\n```python\nx = 1\n```\n\n<!-- snippet: skip needs 2 GPUs -->\n\n"
            "```python\ny = 2\n```\n<!-- not a marker -->\n```python\nz = 3\n```\n")
    got = [(b["line"], b["code"], b["skip"]) for b in python_blocks(text)]
    assert got == [(3, "x = 1", None), (9, "y = 2", "needs 2 GPUs"), (13, "z = 3", None)]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b['line']}" for b in BLOCKS])
def test_readme_python_block_runs(block):
    if block["skip"] is not None:
        pytest.skip(f"README.md line {block['line']}: {block['skip']}")
    if re.search(r"^\s*(from|import) transformers\b", block["code"], re.M) and \
            importlib.util.find_spec("transformers") is None:
        pytest.skip("Hugging Face transformers is not installed (pip install transformers)")
    code = compile(block["code"], f"README.md:{block['line']}", "exec")
    exec(code, {"__name__": "readme_snippet"})
