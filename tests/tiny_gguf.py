"""A tiny Gemma 3 GGUF written by the tests themselves (no model download, ~100 kB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
PIECES = ["▁", "▁Paris", "▁is", "▁in", "▁France", "a", "e", "i", "s", "P", "r", "F", "n", "c"]
QUANTIZED = {"blk.0.ffn_up.weight": "Q8_0", "blk.0.ffn_gate.weight": "Q5_0"}


def make_tiny_gemma3_gguf(path: Path) -> dict[str, Any]:
    """A 1-layer Gemma 3 GGUF: 274-token SentencePiece vocabulary, Q8_0 and Q5_0 matrices."""
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(0)
    hidden, ffn, heads, kv_heads, head_dim = 64, 128, 2, 1, 32
    tokens = [*SPECIALS, *(f"<0x{b:02X}>" for b in range(256)), *PIECES]
    types = [3] * len(SPECIALS) + [6] * 256 + [1] * len(PIECES)
    types[3] = 2  # <unk>
    scores = [0.0] * (len(SPECIALS) + 256) + [-float(i) for i in range(len(PIECES))]
    writer = gguf.GGUFWriter(path, arch="gemma3")
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_sliding_window(512)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)

    def weight(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    tensors: dict[str, Any] = {
        "token_embd.weight": weight(len(tokens), hidden),
        "output_norm.weight": weight(hidden),
        "blk.0.attn_norm.weight": weight(hidden),
        "blk.0.attn_q.weight": weight(heads * head_dim, hidden),
        "blk.0.attn_k.weight": weight(kv_heads * head_dim, hidden),
        "blk.0.attn_v.weight": weight(kv_heads * head_dim, hidden),
        "blk.0.attn_output.weight": weight(hidden, heads * head_dim),
        "blk.0.attn_q_norm.weight": weight(head_dim),
        "blk.0.attn_k_norm.weight": weight(head_dim),
        "blk.0.post_attention_norm.weight": weight(hidden),
        "blk.0.ffn_norm.weight": weight(hidden),
        "blk.0.ffn_gate.weight": weight(ffn, hidden),
        "blk.0.ffn_up.weight": weight(ffn, hidden),
        "blk.0.ffn_down.weight": weight(hidden, ffn),
        "blk.0.post_ffw_norm.weight": weight(hidden),
    }
    for name, value in tensors.items():
        if name in QUANTIZED:  # quantized matrices, as in the shipped Q4_K_M mix
            qtype = gguf.GGMLQuantizationType[QUANTIZED[name]]
            writer.add_tensor(name, gguf.quantize(value, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "tokens": tokens,
        "tensors": tensors,
        "hidden": hidden,
        "embedding": tensors["token_embd.weight"],
    }
