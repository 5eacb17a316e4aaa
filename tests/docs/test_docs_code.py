"""Every ```python block of README.md and docs/*.md runs.

The blocks of one file run in order in one namespace (a page is read top to bottom), in
a temporary working folder with ``VARDAX_HOME`` inside it, so examples that write
relative paths (``.vardax/…``) write there. Blocks in other languages (```bash, ```yaml)
are not executed.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def test_block_extraction():
    text = "a\n```python\nx = 1\n```\n```bash\nmake test\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]


def test_the_docs_exist_and_have_examples():
    names = {p.name for p in PAGES}
    assert {"README.md", "gates.md", "operations.md"} <= names, names
    for name in ("README.md", "gates.md"):
        assert python_blocks((ROOT / ("docs" if name != "README.md" else "") / name).read_text()), name


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p.read_text())], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VARDAX_HOME", str(tmp_path / ".vardax"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page.read_text())):
        code = compile(block, f"{page.name}[python block {i + 1}]", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
