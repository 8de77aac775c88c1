"""The ``icm`` command: bad input fails early with exit 2 and a message naming the culprit,
before any model call and without leaving partial output; a real run writes rows and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_client.cli import main


def write_claims(path: Path, n: int = 6) -> None:
    rows = [
        {
            "id": f"q{i // 2}-{i % 2}",
            "question": f"What colour is object {i // 2}?",
            "choice": f"It is colour {i}.",
            "label": i % 2 == 0,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda p: None, [], "missing.jsonl"),
        (lambda p: p.write_text('{"id": "a", "question": "q", "choice": "c"}\n{oops\n'), [], ":2"),
        (
            lambda p: p.write_text('{"id": "a", "question": "q"}\n'),
            [],
            "field 'choice': task 'truthfulqa' reads field 'choice' (template)",
        ),
        (lambda p: write_claims(p), ["--task", "no-such-task"], "no-such-task"),
        (lambda p: write_claims(p), ["--field", "nonsense"], "--field"),
        (lambda p: write_claims(p), ["--alpha", "-1"], "--alpha"),
        (lambda p: write_claims(p), ["--base-url", "ftp://x"], "base URL"),
    ],
    ids=[
        "missing-file",
        "bad-json-line",
        "missing-field",
        "unknown-task",
        "bad-field",
        "bad-alpha",
        "bad-url",
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_input: object,
    extra: list[str],
    message: str,
) -> None:
    data = tmp_path / "data.jsonl"
    make_input(data)  # type: ignore[operator]
    if not data.exists():  # the missing-file case
        data = tmp_path / "missing.jsonl"
    out = tmp_path / "labels.jsonl"
    args = ["label", str(data), "--task", "truthfulqa", "--out", str(out), "--quiet"]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--no-cache"]
    code, _, err = run_cli(args + extra, capsys)
    assert code == 2
    assert err.startswith("icm: error:")
    assert message in err
    assert list(tmp_path.glob("labels*")) == []


def test_unwritable_output_directory_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.jsonl"
    write_claims(data)
    out = tmp_path / "no" / "such" / "dir" / "labels.jsonl"
    code, _, err = run_cli(
        ["label", str(data), "--task", "truthfulqa", "--out", str(out), "--quiet"], capsys
    )
    assert code == 2
    assert "does not exist" in err and str(out.parent) in err


def test_unknown_sample_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["label", "sample:nope", "--task", "truthfulqa", "--out", str(tmp_path / "o.jsonl")],
        capsys,
    )
    assert code == 2
    assert "truthfulqa" in err and "cities" in err


# Behind the benchmark marker: a full run on the real model (minutes on CPU)
@pytest.mark.benchmark
def test_label_on_the_real_model_then_again_from_cache(
    local_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's acceptance run in small: real labels and summary, then 0 calls on a rerun."""
    out = tmp_path / "labels.jsonl"
    args = [
        "label",
        "sample:cities",
        "--task",
        "cities",
        "--limit",
        "12",
        "--out",
        str(out),
        "--base-url",
        local_server,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--strategy",
        "bounded",
        "--context-size",
        "6",
        "--steps",
        "12",
        "--quiet",
    ]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    assert {r["label"] for r in rows} <= {"True", "False"}
    assert all(0.0 <= r["confidence"] <= 1.0 for r in rows)
    first = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert first["calls"] > 0 and first["prompt_tokens"] > 0
    assert first["gold_examples"] == 12
    assert "agreement with gold" in stdout

    # The same command again: it resumes the finished run's checkpoint, from the cache.
    code, _, _ = run_cli(args, capsys)
    assert code == 0
    again = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert again["calls"] == 0 and again["resumed_from_step"] is not None
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows

    # --restart replays the whole search: every score it needs comes from the disk cache.
    code, _, _ = run_cli([*args, "--restart"], capsys)
    assert code == 0
    replay = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert replay["calls"] == 0 and replay["resumed_from_step"] is None
    assert replay["cache_hits"] >= first["calls"]
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
