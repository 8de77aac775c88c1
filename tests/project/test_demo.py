"""The README's first run: the bundled reviews sample, and ICM reported beside zero-shot.

The generator is deterministic and balanced; ``icm label`` prints ICM's agreement beside
the same model's zero-shot agreement when the data has gold labels (checked on a simulated
model whose zero-shot answers are known); the demo itself runs on the real embedded model.
"""

from __future__ import annotations

import json
import shlex
from importlib import resources
from pathlib import Path

import pytest

from icm_client.advice import comparison
from icm_client.cli import build_parser, main
from icm_client.dataset import load_dataset
from icm_client.diagnostics import diagnose
from icm_client.samples import make_reviews
from icm_client.tasks import get_task
from icm_client.testing import InContext, LoopbackServer

README = Path(__file__).parents[2] / "README.md"
SAMPLES = resources.files("icm_client.samples")


def first_command() -> str:
    """The README's first command after the install: ``icm label ...``."""
    text = README.read_text()
    line = next(ln for ln in text.splitlines() if "pip install -e '.[local]' && icm label" in ln)
    return line[line.index("icm label") :].strip()


def test_the_generator_is_deterministic_and_ships_its_output() -> None:
    rows = make_reviews.make_rows()
    assert rows == make_reviews.make_rows()
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    assert (SAMPLES / "reviews_sample.jsonl").read_text(encoding="utf-8") == lines
    assert make_reviews.make_rows(seed=1) != rows


PER_POLARITY = sum(len(aspects) for _, aspects in make_reviews.ITEMS) * 6 * 4


@pytest.mark.parametrize("n", [2, 40, 100, 2 * PER_POLARITY])
def test_reviews_are_balanced_distinct_and_unordered(n: int) -> None:
    rows = make_reviews.make_rows(n)
    labels = [r["label"] for r in rows]
    assert len(rows) == n and labels.count("Positive") == labels.count("Negative") == n // 2
    assert len({r["review"] for r in rows}) == n
    assert len({r["id"] for r in rows}) == n
    if n >= 40:  # labels do not follow the row order
        assert labels != sorted(labels) and labels != sorted(labels, reverse=True)


def test_the_generator_refuses_what_it_cannot_make() -> None:
    for n in (0, 3, 2 * PER_POLARITY + 2):
        with pytest.raises(ValueError, match="n "):
            make_reviews.make_rows(n)


def test_the_reviews_task_reads_the_sample() -> None:
    dataset = load_dataset(Path(str(SAMPLES / "reviews_sample.jsonl")))
    task = get_task("reviews")
    assert task.labels == (" Positive", " Negative")
    assert dataset.gold is not None and len(dataset.gold) == len(dataset) == 40
    prompt = task.render(dataset.examples[0])
    assert prompt.startswith("Review: ")
    assert prompt.endswith("\nSentiment (Positive or Negative):")
    assert "label" not in dataset.examples[0].fields


def test_the_readme_first_command_is_the_one_help_starts_with() -> None:
    command = first_command()
    assert command.startswith("icm label sample:reviews --task reviews ")
    epilog = build_parser().epilog or ""
    assert f"Start with: {command};" in epilog
    build_parser().parse_args(shlex.split(command)[1:])  # valid options


def test_icm_label_prints_icm_beside_zero_shot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulated model that learns in context, with a zero-shot prior right on about 75%:
    the run's zero-shot figure is that prior's, ICM's is its own labels', and a second run
    finds the zero-shot answers in the cache like every other score."""
    path = Path(str(SAMPLES / "cities_sample.jsonl"))
    dataset = load_dataset(path, limit=24)
    task = get_task("cities")
    assert dataset.gold is not None
    gold = [0 if dataset.gold.get(ex.id) == "True" else 1 for ex in dataset.examples]
    model = InContext(task, dataset.examples, gold, prior_accuracy=0.7, seed=3)
    prior_right = sum((p > 0) == (y == 0) for p, y in zip(model.prior, gold, strict=True))
    out = tmp_path / "labels.jsonl"
    argv = ["label", "sample:cities", "--task", "cities", "--limit", "24", "--steps", "24"]
    argv += ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    with LoopbackServer(model) as server:
        assert main([*argv, "--base-url", server.base_url]) == 0
        printed = capsys.readouterr().out
        summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
        assert main([*argv, "--base-url", server.base_url, "--restart"]) == 0
        again = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    assert summary["zero_shot_agreement"] == prior_right / 24
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    icm_right = sum(r["label"] == dataset.gold.get(r["id"]) for r in rows)
    assert summary["gold_agreement"] == icm_right / 24
    line = (
        f"ICM {round(100 * icm_right / 24, 1):g}% vs zero-shot "
        f"{round(100 * prior_right / 24, 1):g}% on 24 examples, no labels used"
    )
    assert summary["comparison"] == line and line in printed.splitlines()
    # one per example, less any prompt the preflight already scored; counted in the calls
    assert 20 <= summary["zero_shot_calls"] <= 24
    assert summary["calls"] > 24
    assert again["calls"] == again["zero_shot_calls"] == 0  # all from the cache
    assert again["zero_shot_agreement"] == summary["zero_shot_agreement"]


def test_no_zero_shot_calls_without_gold_labels(tmp_path: Path) -> None:
    path = tmp_path / "claims.jsonl"
    rows = [json.loads(line) for line in (SAMPLES / "cities_sample.jsonl").read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "label": None}) + "\n" for r in rows[:12]))
    dataset = load_dataset(path)
    task = get_task("cities")
    model = InContext(task, dataset.examples, [i % 2 for i in range(12)])
    out = tmp_path / "labels.jsonl"
    argv = ["label", str(path), "--task", "cities", "--steps", "1", "--initial-labeled", "1"]
    argv += ["--out", str(out), "--no-cache", "--quiet"]
    with LoopbackServer(model) as server:
        assert main([*argv, "--base-url", server.base_url]) == 0
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    assert summary["zero_shot_agreement"] is None and summary["comparison"] is None


def test_no_zero_shot_under_a_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A budget is for labeling: the evaluation-only baseline does not spend it."""
    dataset = load_dataset(Path(str(SAMPLES / "cities_sample.jsonl")), limit=12)
    assert dataset.gold is not None
    gold = [0 if dataset.gold.get(ex.id) == "True" else 1 for ex in dataset.examples]
    model = InContext(get_task("cities"), dataset.examples, gold)
    out = tmp_path / "labels.jsonl"
    argv = ["label", "sample:cities", "--task", "cities", "--limit", "12", "--steps", "12"]
    argv += ["--out", str(out), "--no-cache", "--quiet", "--max-calls", "100000"]
    with LoopbackServer(model) as server:
        assert main([*argv, "--base-url", server.base_url]) == 0
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    assert summary["gold_agreement"] is not None and summary["zero_shot_agreement"] is None
    assert "no zero-shot baseline under a budget" in capsys.readouterr().err


def _rows(confidence: float, agrees: list[bool]) -> list[dict[str, object]]:
    labels = ["True", "False"] * (len(agrees) // 2)
    return [
        {"id": f"r{i}", "label": y, "confidence": confidence, "agrees": a}
        for i, (y, a) in enumerate(zip(labels, agrees, strict=True))
    ]


def test_the_comparison_claims_no_win_when_the_model_did_not_decide() -> None:
    summary = {"task": "t", "inconsistencies": 0, "gold_examples": 40}
    summary |= {"gold_agreement": 0.575, "zero_shot_agreement": 0.5}
    sound = diagnose(summary, [], _rows(0.9, [True] * 40))
    assert comparison(sound, summary) == "ICM 57.5% vs zero-shot 50% on 40 examples, no labels used"
    copying = diagnose(summary, [], _rows(0.52, [i % 3 == 0 for i in range(40)]))
    line = comparison(copying, summary)
    assert line is not None and line.startswith("ICM 57.5% vs zero-shot 50% on 40 examples")
    assert "no win to claim: the model did not decide this labeling" in line
    assert comparison(sound, {**summary, "zero_shot_agreement": None}) is None


# Behind the benchmark marker: the README demo on the real model, in full (minutes on CPU)
@pytest.mark.benchmark
def test_the_readme_demo_on_the_embedded_model(
    require_local_model: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, as written (seed 0), on the real embedded model. The
    threshold is relaxed; benchmarks/demo_reviews.py measures seeds 0-4."""
    argv = shlex.split(first_command())[1:]
    out = tmp_path / "labels.jsonl"
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    assert summary["gold_agreement"] >= 0.75, summary["label_counts"]
    assert summary["zero_shot_agreement"] is not None
    assert summary["comparison"] in capsys.readouterr().out
