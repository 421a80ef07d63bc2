"""PRSM's tiny plumbing-test model: a Llama-architecture model with random weights and its
own byte-level tokenizer, built locally from a fixed seed so that vLLM can run it on a CPU
with no download.

It produces noise, not language: it exists to exercise the serving path end to end (engine,
Serve, gateway, streaming, canaries). Deploy any Hugging Face model directory or hub id in
its place for real answers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

NAME = "prsm-tiny-llama"
RECIPE = 2  # bump when the recipe below changes: a stale directory is rebuilt
SEED = 20260101
MAX_POSITIONS = 2048
SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_MARKER = "PRSM_TEST_MODEL.json"


def is_built(path: Path) -> bool:
    marker = path / _MARKER
    if not marker.is_file():
        return False
    return int(json.loads(marker.read_text()).get("recipe", 0)) == RECIPE


def ensure_tiny_model(path: Path) -> Path:
    """Build the model into ``path`` unless it is already there; return ``path``.

    Safe against concurrent builders: each builds into its own temporary directory and the
    first rename wins."""
    if is_built(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=path.parent))
    staging.chmod(0o755)
    try:
        _build(staging)
        if path.exists() and not is_built(path):
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(staging, path)
        except OSError:
            if not is_built(path):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _build(target: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # 256 bytes + 3 special: every id decodes to text
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: vLLM's CPU attention rejects 16
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    (target / _MARKER).write_text(
        json.dumps(
            {
                "name": NAME,
                "recipe": RECIPE,
                "seed": SEED,
                "note": "PRSM plumbing test model: random weights, byte-level tokenizer; "
                "its output is noise, not language.",
            },
            indent=2,
        )
    )


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 byte symbols
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    bos, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )
