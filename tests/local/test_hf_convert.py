"""The GGUF -> HF conversion behind providers/vllm_cpu_setup.py, on a tiny model made here.

The BOS fix is checked with the real ``tokenizers`` library (a small wheel, in the dev
extra). The full conversion (transformers + torch + accelerate, ~1-3 GB) runs where those
are installed, as in the vLLM venv, and is skipped elsewhere: CI does not install torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_gguf import SPECIALS, make_tiny_gemma3_gguf

from icm_client.local.hf_convert import add_bos, bos_template


def _word_level_tokenizer(directory: Path) -> None:
    """A tokenizer.json without a post-processor, as the GGUF conversion leaves Gemma's."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, "Paris", "is", "here"])}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": tok,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, tok in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def test_add_bos_makes_the_tokenizer_prepend_bos(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    _word_level_tokenizer(tmp_path)
    before = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert before.encode("Paris is here").ids == [4, 5, 6]

    assert add_bos(tmp_path) == ("<bos>", 2)
    after = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert after.encode("Paris is here").ids == [2, 4, 5, 6]
    assert after.encode("Paris is here", add_special_tokens=False).ids == [4, 5, 6]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True

    add_bos(tmp_path)  # idempotent: still exactly one BOS
    again = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert again.encode("Paris is here").ids == [2, 4, 5, 6]


def test_add_bos_refuses_a_tokenizer_without_a_known_bos(tmp_path: Path) -> None:
    _word_level_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    with pytest.raises(ValueError, match="not in the tokenizer"):
        add_bos(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({}))
    with pytest.raises(ValueError, match="no bos_token"):
        add_bos(tmp_path)


def test_bos_template_names_the_token_and_id() -> None:
    template = bos_template("<bos>", 2)
    assert template["special_tokens"]["<bos>"]["ids"] == [2]
    assert template["single"][0] == {"SpecialToken": {"id": "<bos>", "type_id": 0}}


def test_convert_writes_a_loadable_checkpoint_with_bos(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from icm_client.local.hf_convert import convert

    source = tmp_path / "tiny.gguf"
    made = make_tiny_gemma3_gguf(source)
    out = convert(source, tmp_path / "hf", dtype="float32")

    assert out == tmp_path / "hf" and not (tmp_path / "hf.partial").exists()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["hidden_size"] == made["hidden"] and config["num_hidden_layers"] == 1
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    embedding = model.get_input_embeddings().weight.detach().numpy()
    # Gemma scales embeddings at run time, not in the stored weights.
    np.testing.assert_allclose(embedding, made["embedding"], atol=1e-6)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Paris")["input_ids"]
    assert ids[0] == 2 and 2 not in ids[1:]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(made["tokens"]))
    assert torch.isfinite(logits).all()
