"""``label()`` end to end on a deterministic fake backend: rows, summary, no gold leakage."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hash_backend import HashBackend

from icm_client.dataset import load_dataset
from icm_client.run import LabelConfig, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

pytestmark = pytest.mark.anyio


def write_dataset(path: Path, gold: list[bool]) -> None:
    rows = [
        {
            "id": f"c{i}",
            "statement": f"The city of C{i // 2} is in K{i % 3}.",
            "city": f"C{i // 2}",
            "country": f"K{i % 3}",
            "label": g,
        }
        for i, g in enumerate(gold)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


CONFIG = LabelConfig(search=SearchConfig(steps=25, seed=5))


async def test_label_returns_a_row_per_example_and_a_summary(tmp_path: Path) -> None:
    gold = [i % 2 == 0 for i in range(12)]
    write_dataset(tmp_path / "d.jsonl", gold)
    ds = load_dataset(tmp_path / "d.jsonl")
    backend = HashBackend()
    result = (await label(ds.examples, get_task("cities"), backend, CONFIG)).with_gold(ds.gold)
    assert [r.id for r in result.rows] == [ex.id for ex in ds.examples]
    assert {r.label for r in result.rows} <= {"True", "False"}
    assert all(r.confidence is not None and 0.0 <= r.confidence <= 1.0 for r in result.rows)
    s = result.summary
    assert s.calls == backend.usage.calls == len(set(backend.prompts))  # nothing paid twice
    assert s.steps == 25 and s.examples == 12 and s.gold_examples == 12
    assert s.gold_agreement is not None and 0.0 <= s.gold_agreement <= 1.0
    assert sum(s.label_counts.values()) == 12


async def test_permuting_gold_labels_changes_nothing_the_search_sees(tmp_path: Path) -> None:
    gold = [i % 3 == 0 for i in range(12)]
    shuffled = gold[:]
    random.Random(1).shuffle(shuffled)
    assert shuffled != gold
    write_dataset(tmp_path / "a.jsonl", gold)
    write_dataset(tmp_path / "b.jsonl", [not g for g in shuffled])
    a, b = load_dataset(tmp_path / "a.jsonl"), load_dataset(tmp_path / "b.jsonl")
    assert a.examples == b.examples and a.gold != b.gold
    ba, bb = HashBackend(), HashBackend()
    ra = await label(a.examples, get_task("cities"), ba, CONFIG)
    rb = await label(b.examples, get_task("cities"), bb, CONFIG)
    assert ba.prompts == bb.prompts
    assert ra.rows == rb.rows and ra.trajectory == rb.trajectory


async def test_a_dataset_object_cannot_be_passed_to_the_search(tmp_path: Path) -> None:
    write_dataset(tmp_path / "d.jsonl", [True, False])
    ds = load_dataset(tmp_path / "d.jsonl")
    with pytest.raises(TypeError, match="gold"):
        await label(ds, get_task("cities"), HashBackend())  # type: ignore[arg-type]
