"""Exports, loaded back by what they are for: JSON Lines parsed and schema-checked, and, when
the ``hf`` extra is installed, loaded by ``datasets`` itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from icm_client.cli import main
from icm_client.dataset import Example
from icm_client.errors import ConfigError, DataError
from icm_client.export import chat_records, join, labeled_records, preference_pairs
from icm_client.runs.files import LabelLine
from icm_client.tasks import get_task

HAVE_DATASETS = importlib.util.find_spec("datasets") is not None
needs_datasets = pytest.mark.skipif(not HAVE_DATASETS, reason="datasets is not installed")


def comparisons() -> list[Example]:
    """Two questions, each comparison with its swap, plus one without a swap."""
    out = []
    for q in range(2):
        a, b = f"Answer A{q}.", f"Answer B{q}."
        out.append(Example(f"q{q}-ab", {"question": f"Question {q}?", "choice": a, "choice_2": b}))
        out.append(Example(f"q{q}-ba", {"question": f"Question {q}?", "choice": b, "choice_2": a}))
    out.append(Example("lone", {"question": "Q?", "choice": "Yes.", "choice_2": "No."}))
    return out


def line(ex_id: str, label: str, confidence: float = 0.8) -> LabelLine:
    return LabelLine(id=ex_id, label=label, confidence=confidence)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def test_preference_pairs_merge_swaps_and_drop_contradictions() -> None:
    rows = [
        line("q0-ab", "True"),  # A0 > B0
        line("q0-ba", "False"),  # the swap agrees
        line("q1-ab", "True"),  # A1 > B1
        line("q1-ba", "True"),  # B1 > A1: contradiction
        line("lone", "False"),
    ]
    pairs, stats = preference_pairs(get_task("comparison"), join(comparisons(), rows))
    assert pairs == [
        {"prompt": "Question 0?", "chosen": "Answer A0.", "rejected": "Answer B0."},
        {"prompt": "Q?", "chosen": "No.", "rejected": "Yes."},
    ]
    assert (stats.pairs, stats.duplicates, stats.conflicts) == (2, 1, 1)
    with pytest.raises(ConfigError, match="comparison task"):
        preference_pairs(get_task("cities"), [])


def test_chat_and_labeled_records() -> None:
    examples = [Example("a", {"statement": "S1.", "city": "c", "country": "k"})]
    pairs = join(examples, [line("a", "False", 0.7)])
    (chat,) = chat_records(get_task("cities"), pairs)
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert chat["messages"][1]["content"].startswith("Question: Is the following statement true?")
    assert chat["messages"][1]["content"].endswith("Answer with exactly that one word.")
    assert chat["messages"][2]["content"] == "False"
    assert labeled_records(pairs) == [
        {"id": "a", "statement": "S1.", "city": "c", "country": "k", "label": "False",
         "confidence": 0.7}
    ]  # fmt: skip
    assert join(examples, [line("a", "True", 0.4)], min_confidence=0.5) == []
    with pytest.raises(DataError, match="name no example"):
        join(examples, [line("zzz", "True")])
    with pytest.raises(DataError, match="'Maybe'"):
        chat_records(get_task("cities"), join(examples, [line("a", "Maybe")]))


def _label(tmp_path: Path, server: FaultServer) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"id": ex.id, **ex.fields}) + "\n" for ex in comparisons()))
    out = tmp_path / "labels.jsonl"
    args = ["label", str(data), "--task", "comparison", "--out", str(out), "--quiet"]
    assert main([*args, "--base-url", server.base_url, "--no-cache"]) == 0
    return out


def test_export_cli_from_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer() as server:
        labels = _label(tmp_path, server)
    run = str(tmp_path / "labels.jsonl.run")
    for fmt in ("labels", "chat", "preference"):
        assert main(["export", run, "--format", fmt, "--out", str(tmp_path / f"x.{fmt}")]) == 0
    capsys.readouterr()
    rows = read_jsonl(labels)
    exported = read_jsonl(tmp_path / "x.labels")
    assert [r["id"] for r in exported] == [r["id"] for r in rows]
    assert all(
        {"question", "choice", "choice_2", "label", "confidence"} <= r.keys() for r in exported
    )
    assert all(len(r["messages"]) == 3 for r in read_jsonl(tmp_path / "x.chat"))
    prefs = read_jsonl(tmp_path / "x.preference")
    assert prefs and all(set(p) == {"prompt", "chosen", "rejected"} for p in prefs)
    assert all(p["chosen"] != p["rejected"] for p in prefs)
    # without a run directory the input must be named
    args = ["export", str(labels), "--format", "chat", "--out", str(tmp_path / "y")]
    (tmp_path / "labels.jsonl.run" / "diagnostics.json").unlink()
    assert main(args) == 2 and "--data" in capsys.readouterr().err
    assert main([*args, "--data", str(tmp_path / "pairs.jsonl"), "--task", "comparison"]) == 0


@needs_datasets
def test_exports_load_in_datasets(tmp_path: Path) -> None:
    import datasets

    with FaultServer() as server:
        _label(tmp_path, server)
    run = str(tmp_path / "labels.jsonl.run")
    for fmt in ("chat", "preference"):
        assert main(["export", run, "--format", fmt, "--out", str(tmp_path / f"x.{fmt}")]) == 0
    prefs = datasets.load_dataset("json", data_files=str(tmp_path / "x.preference"), split="train")
    assert set(prefs.column_names) == {"prompt", "chosen", "rejected"} and len(prefs) >= 1
    chat = datasets.load_dataset("json", data_files=str(tmp_path / "x.chat"), split="train")
    assert chat.column_names == ["messages"]
    assert [m["role"] for m in chat[0]["messages"]] == ["system", "user", "assistant"]

    assert main(["export", run, "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    saved = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(saved) == 5 and {"id", "label", "confidence", "question"} <= set(saved.column_names)
    assert main(["export", run, "--format", "hf", "--out", str(tmp_path / "hf")]) == 2  # exists


@pytest.mark.skipif(HAVE_DATASETS, reason="datasets is installed")
def test_hf_export_without_datasets_says_how_to_install() -> None:
    from icm_client.export import to_hf_dataset

    with pytest.raises(ConfigError, match=r"icm-client\[hf\]"):
        to_hf_dataset([{"a": 1}])
