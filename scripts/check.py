"""The whole test suite: lint, format, types, layering, then every test.

Run from the repository root with the project's virtual environment:
    .venv/bin/python scripts/check.py [extra pytest arguments]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
STEPS = [
    ("ruff", [str(BIN / "ruff"), "check", "prsm", "tests", "benchmarks", "scripts", "jobs"]),
    (
        "ruff format",
        [str(BIN / "ruff"), "format", "--check", "prsm", "tests", "benchmarks", "scripts", "jobs"],
    ),
    ("mypy", [str(BIN / "mypy")]),
    ("import-linter", [str(BIN / "lint-imports")]),
]


def main() -> int:
    for name, command in STEPS:
        print(f"== {name}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            print(f"== {name} failed", flush=True)
            return 1
    print("== pytest", flush=True)
    # The slowest tests are named in the report, so a suite that grows slow says where.
    pytest = [str(BIN / "pytest"), "--durations=25", *sys.argv[1:]]
    return subprocess.run(pytest, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
