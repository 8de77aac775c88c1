"""Every shipped example runs, as a user runs it: the task config and its data (checked, then
labeled by the documented command), ``label_api.py``, ``word_problems.py``, and the README's
Python example (against the stand-in model here; on the embedded model in the integration
run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fault_server import fault_server
from processes import HANG_S

from icm_client.cli import main
from icm_client.dataset import load_dataset
from icm_client.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_arithmetic_config_task_constrains_each_sum() -> None:
    task = get_task(str(EXAMPLES / "arithmetic_task.toml"))
    data = load_dataset(EXAMPLES / "arithmetic.jsonl")
    prompts = [task.render(ex) for ex in data.examples]
    assert all(p == p.rstrip() and p.endswith("I think this claim is") for p in prompts)
    assert prompts[0].startswith("Claim: 22 + 11 = 33\n")
    pairs = {(c.i, c.j) for c in task.constraints(data.examples)}
    # each sum has one right and one wrong result: one constrained pair per sum, no others
    assert pairs == {(2 * k, 2 * k + 1) for k in range(len(data.examples) // 2)}


def test_label_api_runs_and_prints_rows_a_budget_left_unlabeled(tmp_path: Path) -> None:
    """``examples/label_api.py`` as a user runs it (a subprocess), against the stand-in model,
    with a budget that leaves examples unlabeled: their rows print as ``(none)``."""
    script = EXAMPLES / "label_api.py"
    argv = [sys.executable, str(script), "sample:cities", "cities", "--steps", "12"]
    argv += ["--max-calls", "25"]
    env = {**os.environ, "ICM_CACHE_DIR": str(tmp_path / "cache")}
    with fault_server() as server:
        done = subprocess.run(
            [*argv, "--base-url", server.base_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_S,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "icm: plan:" in done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["stopped"] == "budget" and summary["unlabeled"] > 0
    assert done.stdout.count("(none)") == summary["unlabeled"]


def readme_python() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert len(blocks) == 1, "README.md should hold one Python example"
    return blocks[0]


def test_the_readme_python_example_needs_no_file_or_server() -> None:
    code = readme_python()
    assert "icm.connect(None" in code and '"sample:' in code and "icm.Progress(" in code
    assert "steps=" in code  # a bounded run, not the converging default


def test_the_readme_python_example_runs_against_a_server(tmp_path: Path) -> None:
    """The README's Python block in a fresh process, as written but for the server: the
    stand-in model's URL where the README says ``None`` (the embedded model)."""
    code = readme_python()
    assert code.count("icm.connect(None,") == 1
    env = {**os.environ, "ICM_CACHE_DIR": str(tmp_path / "cache")}
    with fault_server() as server:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                code.replace("icm.connect(None,", f"icm.connect({server.base_url!r},"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=HANG_S,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "icm: plan: 16 examples, 16 search steps" in done.stderr and "16/16" in done.stderr
    assert re.search(r"label_counts=\{.*\}.*gold_agreement=0?\.?\d", done.stdout)


# Behind the benchmark marker: the real model through the README example, in full (minutes on CPU)
@pytest.mark.benchmark
@pytest.mark.integration
def test_the_readme_python_example_runs_as_written(
    tmp_path: Path, require_local_model: None
) -> None:
    """The README's Python block, run as written (a fresh process, an empty cache) on the
    embedded model: it prints its plan and progress, then its result."""
    env = {**os.environ, "ICM_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", readme_python()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=HANG_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "icm: plan: 16 examples, 16 search steps" in done.stderr
    assert "16/16" in done.stderr  # the progress bar's last state
    assert re.search(r"label_counts=\{.*\}.*gold_agreement=0?\.?\d", done.stdout)


def test_the_examples_readme_commands_are_real_and_say_what_the_small_model_gives(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its model-free command runs as written; its labeling command names a capable model,
    and the text says why the embedded one collapses."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"`(icm [^`]+)`", text)
    check = next(c for c in commands if c.startswith("icm task check"))
    monkeypatch.chdir(ROOT)
    assert main(check.split()[1:]) == 0
    assert "relation answer_consistency: 8 constrained pairs" in capsys.readouterr().out
    labeling = next(c for c in commands if c.startswith("icm label"))
    assert "--base-url" in labeling and "--calibrate" in labeling
    assert "collapses to one label" in text and "copies the labels of its" in text


def test_word_problems_writes_what_the_gsm8k_task_reads(tmp_path: Path) -> None:
    """``examples/word_problems.py`` as the README runs it (smaller): its file loads, with gold
    labels split off, and the ``gsm8k`` task's relation binds between a question's solutions."""
    out = tmp_path / "problems.jsonl"
    argv = [sys.executable, str(EXAMPLES / "word_problems.py"), "--n", "40", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    data = load_dataset(out)
    assert len(data) == 40 and data.gold is not None and len(data.gold) == 40
    assert {data.gold.get(e.id) for e in data.examples} == {"True", "False"}
    assert get_task("gsm8k").constraints(data.examples)  # wrong answers contradict right ones


def test_the_examples_labeling_command_runs_against_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/README.md's ``icm label`` command, as written but for the server (a stand-in
    serving the model it names), the output (in a temporary folder) and a fixed step count."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    command = next(c for c in re.findall(r"`(icm [^`]+)`", text) if c.startswith("icm label"))
    argv = command.split()[1:]
    out = tmp_path / "sums.jsonl"
    monkeypatch.chdir(ROOT)
    with fault_server(model=argv[argv.index("--model") + 1]) as server:  # the model it names
        argv[argv.index("--base-url") + 1] = server.base_url
        argv[argv.index("--out") + 1] = str(out)
        argv += ["--cache-dir", str(tmp_path / "cache"), "--steps", "16", "--quiet"]
        assert main(argv) == 0, capsys.readouterr().err[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16 and all(r["label"] in ("True", "False") for r in rows)
