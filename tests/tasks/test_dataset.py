"""load_dataset: formats, ids, gold split, and every error with its location."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from icm_client.dataset import load_dataset
from icm_client.errors import DataError

SAMPLES = Path(__file__).resolve().parents[2] / "icm_client" / "samples"
PAPER = Path("/work/shared/data/icm-paper/data")
CITIES_CSV = Path("/work/shared/data/geometry-of-truth/cities.csv")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


ROWS: list[dict[str, object]] = [
    {"id": "a", "question": "Q1", "choice": "yes", "label": True},
    {"id": "b", "question": "Q1", "choice": "no", "label": 0},
    {"id": 3, "question": "Q2", "choice": "maybe", "label": "yes"},
]


# --- formats -------------------------------------------------------------------------------


def test_jsonl_with_ids_and_gold_split(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(ROWS[:2]) + "\n   \n" + jsonl(ROWS[2:]))
    ds = load_dataset(path)
    assert [ex.id for ex in ds.examples] == ["a", "b", "3"]
    assert dict(ds.examples[0].fields) == {"question": "Q1", "choice": "yes"}
    assert all("label" not in ex.fields and "id" not in ex.fields for ex in ds.examples)
    assert ds.gold is not None
    assert dict(ds.gold.by_id) == {"a": "True", "b": "False", "3": "True"}
    assert ds.source == str(path)


def test_json_list(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path, "d.json", json.dumps(ROWS, indent=2)))
    assert [ex.id for ex in ds.examples] == ["a", "b", "3"]


def test_csv_and_label_words(tmp_path: Path) -> None:
    text = 'statement,label,city\nA is in B.,1,A\nA is in C.,0,A\n"multi\nline",maybe,X\n'
    ds = load_dataset(write(tmp_path, "d.csv", text), id_field=None)
    assert dict(ds.examples[0].fields) == {"statement": "A is in B.", "city": "A"}
    assert ds.gold is not None
    assert list(ds.gold.by_id.values()) == ["True", "False", "maybe"]


@pytest.mark.parametrize(
    ("text", "n"),
    [("[" + json.dumps(ROWS[0]) + "]", 1), (jsonl(ROWS), 3), ("x,label\n1,0\n", 1)],
)
def test_sniffing_unknown_extension(tmp_path: Path, text: str, n: int) -> None:
    assert len(load_dataset(write(tmp_path, "d.txt", text))) == n


def test_content_ids_stable_and_duplicates_suffixed(tmp_path: Path) -> None:
    rows = [{"q": "x", "label": 1}, {"q": "y", "label": 0}, {"q": "x", "label": 0}]
    ds = load_dataset(write(tmp_path, "d.jsonl", jsonl(rows)))
    a, b, c = (ex.id for ex in ds.examples)
    assert len(a) == 12 and c == f"{a}-2" and b != a
    again = load_dataset(write(tmp_path, "e.jsonl", jsonl(list(reversed(rows[:2])))))
    assert {ex.id for ex in again.examples} == {a, b}  # independent of order and label


def test_fields_rename_limit_and_drop(tmp_path: Path) -> None:
    rows = [{"question": "q", "cot": "s", "votes": [1, 0], "label": True}] * 3
    path = write(tmp_path, "d.jsonl", jsonl(rows))
    ds = load_dataset(path, fields={"cot": "solution"}, drop=["votes"], limit=2)
    assert len(ds) == 2
    assert dict(ds.examples[0].fields) == {"question": "q", "solution": "s"}


def test_label_field_none_keeps_no_gold(tmp_path: Path) -> None:
    ds = load_dataset(write(tmp_path, "d.jsonl", jsonl([{"q": "x"}])), label_field=None)
    assert ds.gold is None and dict(ds.examples[0].fields) == {"q": "x"}


def test_permuting_gold_leaves_examples_identical(tmp_path: Path) -> None:
    rows = [{"question": f"Q{i % 3}", "choice": f"c{i}", "label": i % 2 == 0} for i in range(20)]
    labels = [r["label"] for r in rows]
    random.Random(1).shuffle(labels)
    permuted = [{**r, "label": lab} for r, lab in zip(rows, labels, strict=True)]
    one = load_dataset(write(tmp_path, "a.jsonl", jsonl(rows)))
    two = load_dataset(write(tmp_path, "b.jsonl", jsonl(permuted)))
    assert one.examples == two.examples
    assert one.gold != two.gold


def test_bundled_samples_load() -> None:
    tqa = load_dataset(SAMPLES / "truthfulqa_sample.jsonl")
    assert len(tqa) == 32 and tqa.gold is not None
    assert set(tqa.gold.by_id.values()) == {"True", "False"}
    cities = load_dataset(SAMPLES / "cities_sample.jsonl")
    assert len(cities) == 80 and cities.gold is not None
    assert sorted(cities.gold.by_id.values()).count("True") == 40


def test_real_files_by_path() -> None:
    if not PAPER.exists() or not CITIES_CSV.exists():
        pytest.skip("research data not present")
    gsm = load_dataset(PAPER / "test_gsm8k.json", fields={"cot": "solution"})
    assert len(gsm) == 2972 and len({ex.id for ex in gsm}) == 2972
    assert gsm.gold is not None and set(gsm.gold.by_id.values()) == {"True", "False"}
    alpaca = load_dataset(PAPER / "test_alpaca.json", drop=["candidate_label"])
    assert len(alpaca) == 934
    cities = load_dataset(CITIES_CSV)
    assert len(cities) == 1496 and "label" not in cities.examples[0].fields


# --- errors --------------------------------------------------------------------------------


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_missing_and_empty(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: file not found"
    empty = write(tmp_path, "e.jsonl", "\n  \n")
    assert error_of(empty) == f"{empty}: file is empty"
    assert error_of(write(tmp_path, "e.json", "[]")).endswith("file holds no records")


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", b'{"q": "ok"}\n{"q": "caf\xe9"}\n')
    msg = error_of(path)
    assert msg.startswith(f"{path}:2: not UTF-8")
    assert "byte offset 22" in msg


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"q": 1}\n{"q": }\n')
    assert error_of(path).startswith(f"{path}:2: invalid JSON: Expecting value")
    whole = write(tmp_path, "d.json", '[\n{"q": 1},\n{"q" 2}\n]')
    assert error_of(whole).startswith(f"{whole}:3: invalid JSON: Expecting ':' delimiter")


def test_json_object_instead_of_list(tmp_path: Path) -> None:
    assert "name the file .jsonl" in error_of(write(tmp_path, "d.json", '{"q": 1}\n'))


def test_record_not_object(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"q": 1}\n[1, 2]\n')
    assert error_of(path) == f"{path}:2: record is a JSON array, not an object"
    whole = write(tmp_path, "d.json", '[{"q": 1}, "text"]')
    assert error_of(whole) == f"{whole}: record 2: record is a JSON string, not an object"


def test_nested_field_value(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", json.dumps([{"q": 1}, {"q": 2, "votes": [1, 0]}]))
    msg = error_of(path)
    assert msg.startswith(f"{path}: record 2: field 'votes': value is a JSON array")
    assert "drop=" in msg


def test_duplicate_explicit_ids_name_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"id": "x"}, {"id": "y"}, {"id": "x"}]))
    assert error_of(path) == f"{path}:3: field 'id': duplicate id 'x', first used at {path}:1"


def test_gold_label_unsupported(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"q": 1, "label": 1}, {"q": 2, "label": 0.5}]))
    assert error_of(path).startswith(f"{path}:2: field 'label': gold label of unsupported type")
    spaced = write(tmp_path, "s.jsonl", jsonl([{"q": 1, "label": "not sure"}]))
    assert "not a single label word" in error_of(spaced)


def test_csv_errors(tmp_path: Path) -> None:
    ragged = write(tmp_path, "d.csv", "a,b\n1,2\n3\n")
    assert error_of(ragged) == f"{ragged}:3: row has 1 cells, the header has 2 columns"
    header = write(tmp_path, "h.csv", "a,a\n1,2\n")
    assert error_of(header).startswith(f"{header}:1: CSV header has empty or repeated")


def test_rename_of_absent_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"q": 1}]))
    msg = error_of(path, fields={"cott": "solution"})
    assert msg == f"{path}: fields to rename ['cott'] are in no record (the file has ['q'])"


def test_rename_collision(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"cot": "a", "solution": "b"}]))
    assert "two fields named 'solution'" in error_of(path, fields={"cot": "solution"})
