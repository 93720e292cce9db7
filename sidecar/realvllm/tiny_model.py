"""Build a tiny random Llama and a ChatML BPE tokenizer with no hub: run by the vLLM venv's python.

This file is a standalone script (stdlib, ``tokenizers``, ``transformers``, ``torch`` only) because
those libraries live in vLLM's virtualenv, not the sidecar's. The tokenizer is trained on the
interpreter's own stdlib sources, so it needs no download and is the same on every machine with
the same Python; the weights come from ``torch.manual_seed(seed)``, so a seed is a "model version".

Usage: python tiny_model.py OUT_DIR --seed N
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
# Which special token plays which part; eos is ChatML's end of turn.
ROLES = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "<|im_end|>", "pad_token": "<pad>"}
VOCAB_SIZE = 4096
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def training_files() -> list[str]:
    """The stdlib's top-level ``*.py`` files and LICENSE.txt, in a stable order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(str(p) for p in stdlib.glob("*.py"))
    licence = stdlib / "LICENSE.txt"
    return [*files, str(licence)] if licence.is_file() else files


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=ROLES["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train(training_files(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **ROLES)
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out)


def build_model(out: Path, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=SPECIAL_TOKENS.index("<s>"),
        eos_token_id=SPECIAL_TOKENS.index("<|im_end|>"),
        pad_token_id=SPECIAL_TOKENS.index("<pad>"),
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(args.out)
    build_model(args.out, args.seed)
    (args.out / "built.json").write_text(json.dumps({"seed": args.seed}))


if __name__ == "__main__":
    main()
