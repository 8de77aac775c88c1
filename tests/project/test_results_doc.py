"""``benchmarks/results.py`` end to end, the small version CI runs: made-up files with the
shared data's layout and columns, the loopback stand-in model instead of the embedded one.
Checks that the document has every task and every baseline, and the command that made it;
the numbers are the stand-in's noise and are not checked."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fault_server import fault_server
from processes import HANG_S

ROOT = Path(__file__).parents[2]
CONDITIONS = ("zero-shot", "icm", "gold", "random", "perturbed", "bootstrap")


def make_data(root: Path) -> None:
    """A few records per file, with the real files' columns (gold-derived ones included:
    the script must drop them)."""
    got = root / "geometry-of-truth"
    got.mkdir(parents=True)
    with (got / "cities.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["statement", "label", "city", "country", "correct_country"])
        for k in range(12):
            city, right, wrong = f"Town{k}", f"Land{k}", f"Land{k + 1}"
            w.writerow([f"The city of {city} is in {right}.", 1, city, right, right])
            w.writerow([f"The city of {city} is in {wrong}.", 0, city, wrong, right])
    paper = root / "icm-paper" / "data"
    paper.mkdir(parents=True)
    for split, offset in (("train", 0), ("test", 100)):
        rows = [
            {
                "question": f"What is true of thing {q + offset}?",
                "choice": f"Thing {q + offset} has property {c}.",
                "label": int(c == 0),
                "consistency_id": q + offset,
            }
            for q in range(6)
            for c in range(3)
        ]
        (paper / f"{split}_truthfulqa.json").write_text(json.dumps(rows))
    gsm = [
        {
            "question": f"What is {q} + {q}?",
            "answer": str(2 * q + c % 2),
            "cot": f"{q} + {q} = {2 * q + c % 2}. The answer is {2 * q + c % 2}.",
            "label": c % 2 == 0,
            "ref_cot": "gold",
            "ref_answer": str(2 * q),
            "difficulty": 0.5,
            "consistency_id": q,
            "category": "easy",
        }
        for q in range(8)
        for c in range(4)
    ]
    (paper / "test_gsm8k.json").write_text(json.dumps(gsm))
    alpaca = []
    for q in range(10):
        a, b = f"Answer A{q}.", f"Answer B{q}."
        for first, second, label in ((a, b, True), (b, a, False)):
            alpaca.append(
                {
                    "question": f"Request {q}?",
                    "choice": first,
                    "choice_2": second,
                    "candidate_label": label,
                    "label": label,
                    "confidence": 1.0,
                    "consistency_id": q,
                    "hh_type": "helpful",
                }
            )
    (paper / "test_alpaca.json").write_text(json.dumps(alpaca))


@pytest.mark.benchmark
def test_the_results_document_has_every_task_and_baseline(tmp_path: Path) -> None:
    data, work, out = tmp_path / "data", tmp_path / "work", tmp_path / "results.md"
    make_data(data)
    with fault_server() as server:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "results.py"), "--quick"]
        cmd += ["--data", str(data), "--work", str(work), "--out", str(out)]
        cmd += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "python benchmarks/results.py --quick --data $DATA --work $WORK" in text
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in summary.splitlines() if line.startswith("| task"))
    assert all(f" {c} " in header for c in CONDITIONS)
    for task in ("cities", "truthfulqa", "gsm8k", "alpaca"):
        row = next(line for line in summary.splitlines() if line.startswith(f"| {task} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(c.endswith("%") or "%" in c for c in cells[1:7]), row  # measured, not "—"
        assert f"## {task}" in text
    # The gold-derived columns never reached the labeler's input files.
    for split in work.glob("*.train.jsonl"):
        for line in split.read_text().splitlines():
            assert not {"correct_country", "consistency_id", "ref_answer"} & set(json.loads(line))
