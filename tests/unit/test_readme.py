"""The README's promises that code can check: its two set-up commands, the CI script that
runs the second, and the configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from prsm.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)[:2]


def test_the_readme_opens_with_bring_up_then_test() -> None:
    up, test = commands()
    assert "\n" not in up and "\n" not in test
    assert up.startswith("python3 scripts/install.py") and up.endswith("prsm up")
    assert test.startswith("python3 scripts/install.py --test") and "scripts/check.py" in test
    first_block = README.index("```bash")
    assert "```" not in README[:first_block]  # nothing comes before the two commands


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands()[1] in ci.splitlines()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"| `PRSM_{name.upper()}` |" in README, name
