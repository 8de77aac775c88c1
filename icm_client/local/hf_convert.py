"""Convert a GGUF model to a Hugging Face checkpoint that vLLM can serve, with the BOS fix.

    python icm_client/local/hf_convert.py --gguf MODEL.gguf --out DIR [--dtype bfloat16]

Used by ``providers/vllm_cpu_setup.py`` to serve the bundled Gemma 3 270M with vLLM on a CPU.
It runs in the vLLM virtual environment, which does not have ``icm_client`` installed, so
this file imports nothing from the package and nothing heavy at module level: it can be run
by path, and imported (for its pure functions) where torch is absent.

Two things the plain ``from_pretrained(..., gguf_file=...)`` / ``save_pretrained`` round trip
gets wrong:

* ``save_pretrained`` refuses a model loaded from a quantized GGUF (transformers keeps a
  "quantizer" attached); the weights are already dequantized in memory, so clearing the
  quantizer and the config's ``quantization_config`` is all it takes.
* The tokenizer converted from the GGUF does not add ``<bos>``; llama.cpp does (the GGUF says
  ``tokenizer.ggml.add_bos_token``). Without it vLLM scores every prompt without BOS and its
  log-probabilities differ from the embedded server's. ``add_bos`` patches the saved
  ``tokenizer.json`` post-processor (and ``tokenizer_config.json``) to prepend it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def bos_template(bos_token: str, bos_id: int) -> dict[str, Any]:
    """A ``tokenizers`` TemplateProcessing post-processor that prepends ``bos_token``."""
    bos = {"SpecialToken": {"id": bos_token, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            bos,
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos_token, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos_token: {"id": bos_token, "ids": [bos_id], "tokens": [bos_token]}},
    }


def _bos_of(tokenizer: dict[str, Any], config: dict[str, Any]) -> tuple[str, int]:
    """The BOS token and id, from tokenizer_config.json's ``bos_token`` and the vocabulary."""
    bos = config.get("bos_token")
    if isinstance(bos, dict):  # AddedToken serialized
        bos = bos.get("content")
    if not isinstance(bos, str) or not bos:
        raise ValueError("tokenizer_config.json names no bos_token")
    for added in tokenizer.get("added_tokens", []):
        if added.get("content") == bos:
            return bos, int(added["id"])
    vocab = tokenizer.get("model", {}).get("vocab")
    if isinstance(vocab, dict) and bos in vocab:
        return bos, int(vocab[bos])
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        for i, entry in enumerate(vocab):
            if entry and entry[0] == bos:
                return bos, i
    raise ValueError(f"bos_token {bos!r} is not in the tokenizer's vocabulary")


def add_bos(model_dir: str | os.PathLike[str]) -> tuple[str, int]:
    """Make the saved tokenizer in ``model_dir`` prepend BOS to every encoded text.

    Rewrites ``tokenizer.json``'s ``post_processor`` (what fast tokenizers and vLLM apply) and
    sets ``add_bos_token`` in ``tokenizer_config.json``. Idempotent. Returns (token, id).
    """
    root = Path(model_dir)
    tok_path, cfg_path = root / "tokenizer.json", root / "tokenizer_config.json"
    tokenizer = json.loads(tok_path.read_text(encoding="utf-8"))
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    bos, bos_id = _bos_of(tokenizer, config)
    tokenizer["post_processor"] = bos_template(bos, bos_id)
    config["add_bos_token"] = True
    _write_json(tok_path, tokenizer)
    _write_json(cfg_path, config)
    return bos, bos_id


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def convert(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dtype: str = "bfloat16",
) -> Path:
    """Write an HF checkpoint (safetensors, config, tokenizer with BOS) of ``gguf_path``.

    Needs torch, transformers, gguf and accelerate. Writes into ``out_dir``.partial and
    renames it to ``out_dir`` at the end, so an interrupted conversion never looks finished.
    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path).resolve()
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=getattr(torch, dtype)
    )
    # The weights are dequantized in memory; the GGUF "quantizer" only blocks saving.
    setattr(model, "hf_quantizer", None)  # noqa: B010 -- typed as a module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    add_bos(partial)
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gguf", required=True, help="the .gguf file")
    parser.add_argument("--out", required=True, help="output directory (replaced)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = convert(args.gguf, args.out, args.dtype)
    print(f"converted {args.gguf} -> {out} in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
