"""Docs and docstrings cite only documents that are in the repository."""

import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent
SOURCES = sorted(
    path
    for pattern in (
        "*.md", "docs/*.md", "bench/**/*.md", "voxtrio/**/*.py", "bench/**/*.py", "tests/**/*.py",
        "tests/scenarios/*.json",
    )
    for path in ROOT.glob(pattern)
)


def test_every_cited_docs_file_exists():
    cited = {
        (path.relative_to(ROOT), name)
        for path in SOURCES
        for name in re.findall(r"docs/[\w-]+\.md", path.read_text(encoding="utf-8"))
    }
    assert cited, "nothing cites docs/"
    missing = sorted((str(where), name) for where, name in cited if not (ROOT / name).is_file())
    assert not missing


def test_nothing_cites_documents_outside_the_repository():
    outside = re.compile(r"shared/spec|/work/|\bA\.\d+\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        if path.name != "test_docs.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert not found, "\n".join(found)
