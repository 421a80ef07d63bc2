"""The repository explains itself: ``docs/architecture.md`` names only modules that exist,
and the code cites the repository's own documents, never files outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Documents that live outside the repository, which a reader of a clone cannot follow.
OUTSIDE = re.compile(r"SPEC\.md|DESIGN\.md|\bSPEC §|\(SPEC\b|\bSPEC defaults|\.\./shared/")


def test_every_path_the_architecture_page_names_exists() -> None:
    named = set(
        re.findall(r"`((?:prsm|tests|docs|benchmarks)/[\w/.-]+)`", ARCHITECTURE.read_text())
    )
    assert len(named) > 40  # the page names the modules, so this test checks something
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_package_of_prsm_is_on_the_architecture_page() -> None:
    text = ARCHITECTURE.read_text()
    packages = [p.name for p in (ROOT / "prsm").iterdir() if (p / "__init__.py").exists()]
    assert len(packages) >= 8
    assert all(f"  {name}/" in text for name in packages), packages


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.split()  # fmt: skip
    this = Path(__file__).relative_to(ROOT).as_posix()
    texts = [f for f in tracked if f != this and f.endswith((".py", ".md", ".toml", ".yaml"))]
    citing = [f for f in texts if OUTSIDE.search((ROOT / f).read_text(errors="replace"))]
    assert not citing, f"these files cite documents outside the repository: {citing}"
