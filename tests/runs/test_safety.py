"""Safety by construction (issue 24): one run-directory object, one writer, the cache
directory, exit codes and the native engine, each probe of the issue as a test that
asserts the safe behaviour and that no input lost a byte."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer
from hash_backend import HashBackend
from test_outputs import SAMPLE, label_args
from test_run import write_dataset

from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.client.cache import ScoreCache
from icm_client.dataset import load_dataset
from icm_client.errors import ConfigError, TaskError
from icm_client.local.native import built_binary, native_server
from icm_client.run import LabelConfig, label
from icm_client.runs.rundir import RunDir
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

ROOT = os.geteuid() == 0
OTHER_UID = 54321  # a user that is not this one (chown needs root)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(SAMPLE.read_bytes())
    return path


@pytest.fixture(scope="module")
def server() -> Any:
    with FaultServer() as s:
        yield s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def a_run(tmp_path: Path, data: Path, server: FaultServer, *extra: str) -> Path:
    """A finished ``icm label`` run (8 examples, 8 steps); its labels file."""
    out = tmp_path / "labels.jsonl"
    assert main(label_args(data, out, server.base_url, *extra)) == 0
    return out


# -- rows 1 and 2: an output is never an input ---------------------------------------------


def test_eval_out_or_write_split_naming_the_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.train.jsonl"
    data.write_bytes(SAMPLE.read_bytes())
    before = data.read_bytes()
    base = ["eval", str(data), "--split", "0.5", "--task", "cities", "--base-url", "http://x/v1"]
    assert main([*base, "--out", str(data)]) == 2
    assert "overwrite its own input" in capsys.readouterr().err
    hard = tmp_path / "hard.json"
    os.link(data, hard)
    assert main([*base, "--out", str(hard)]) == 2
    assert main([*base, "--out", str(tmp_path / "r.json"), "--write-split", str(tmp_path / "d")])
    assert "--write-split's train file" in capsys.readouterr().err
    assert data.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_label_out_naming_its_task_file_is_refused(
    tmp_path: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = Path(__file__).parents[2] / "examples"
    task = tmp_path / "task.toml"
    task.write_bytes((examples / "arithmetic_task.toml").read_bytes())
    argv = ["label", str(examples / "arithmetic.jsonl"), "--task", str(task), "--no-cache"]
    assert main([*argv, "--base-url", server.base_url, "--out", str(task)]) == 2
    assert "is the task file" in capsys.readouterr().err
    assert task.read_bytes() == (examples / "arithmetic_task.toml").read_bytes()


@pytest.mark.parametrize("which", ["labels", "summary", "data", "symlink-to-labels"])
def test_export_out_naming_an_input_is_refused(
    which: str, tmp_path: Path, data: Path, server: FaultServer
) -> None:
    out = a_run(tmp_path, data, server)
    summary = out.with_name(out.name + ".summary.json")
    target = {"labels": out, "summary": summary, "data": data}.get(which)
    if target is None:
        target = tmp_path / "link.jsonl"
        target.symlink_to(out)
    kept = {p: p.read_bytes() for p in (out, summary, data)}
    assert main(["export", str(out), "--format", "labels", "--out", str(target)]) == 2
    assert {p: p.read_bytes() for p in kept} == kept


# -- row 3 and 14: the cache directory ------------------------------------------------------


@pytest.mark.parametrize("shared", [0o1777, 0o2775])
def test_an_existing_shared_cache_directory_keeps_its_mode(tmp_path: Path, shared: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(shared)
    with pytest.warns(RuntimeWarning, match="can be read by others"):
        ScoreCache(directory).close()
    assert mode(directory) == shared
    assert mode(directory / "cache.db") == 0o600


def test_a_new_cache_directory_and_its_database_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        ScoreCache(directory).close()
    assert mode(directory) == 0o700
    assert {mode(p) for p in directory.iterdir() if p.is_file()} == {0o600}


@pytest.mark.skipif(not ROOT, reason="giving a directory to another user needs root")
def test_a_cache_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match="belongs to another user"):
        ScoreCache(directory)
    assert list(directory.iterdir()) == []


# -- row 4: nothing is written through a link planted in the run directory -------------------


@pytest.mark.parametrize("name", ["lock.json", ".trajectory.jsonl.tmp", "diagnostics.json"])
def test_a_link_planted_as_a_run_file_is_not_written_through(
    name: str, tmp_path: Path, data: Path, server: FaultServer
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "labels.jsonl.run"
    run_dir.mkdir(mode=0o700)
    (run_dir / name).symlink_to(victim)
    a_run(tmp_path, data, server)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("name", ["trajectory.jsonl", ".lock", "checkpoint.json"])
def test_a_link_planted_as_run_state_is_refused(
    name: str, tmp_path: Path, data: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = a_run(tmp_path, data, server)
    run_dir = out.with_name(out.name + ".run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run_dir / name).unlink(missing_ok=True)
    (run_dir / name).symlink_to(victim)
    capsys.readouterr()
    assert main(label_args(data, out, server.base_url)) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"


def test_reports_and_scale_chunks_are_not_written_through_links(
    tmp_path: Path, data: Path, server: FaultServer
) -> None:
    out = a_run(tmp_path, data, server)
    run_dir = out.with_name(out.name + ".run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run_dir / "report.md").symlink_to(victim)
    (run_dir / "report.png").symlink_to(tmp_path / "another-victim.txt")
    assert main(["report", str(run_dir)]) == 0
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "another-victim.txt").exists()
    assert not (run_dir / "report.md").is_symlink()

    scale_out = tmp_path / "scale.jsonl"
    scale_run = tmp_path / "scale.jsonl.run"
    scale_run.mkdir(mode=0o700)
    (scale_run / "propagated.jsonl").symlink_to(victim)
    argv = ["scale", str(data), "--task", "cities", "--out", str(scale_out), "--no-cache"]
    argv += ["--base-url", server.base_url, "--context-window", "1000", "--quiet"]
    argv += ["--limit", "30", "--seed-examples", "10", "--steps", "4"]
    argv += ["--strategy", "bounded", "--context-size", "4"]
    assert main(argv) == 2
    assert victim.read_text() == "precious\n"


def test_tampered_scale_batches_and_chunks_are_done_again(
    tmp_path: Path, data: Path, server: FaultServer
) -> None:
    out, run_dir = tmp_path / "scale.jsonl", tmp_path / "scale.jsonl.run"
    argv = ["scale", str(data), "--task", "cities", "--out", str(out), "--quiet"]
    argv += ["--base-url", server.base_url, "--context-window", "1000", "--limit", "30"]
    argv += ["--seed-examples", "10", "--steps", "4", "--strategy", "bounded"]
    argv += ["--context-size", "4", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    first = out.read_text()
    batch = run_dir / "batches" / "0000.json"
    saved = json.loads(batch.read_text())
    saved["rows"][0]["id"] = "someone-else"
    batch.write_text(json.dumps(saved))
    chunks = run_dir / "propagated.jsonl"
    lines = [json.loads(line) for line in chunks.read_text().splitlines()]
    lines[0]["labels"] = {k: ["Maybe", 2] for k in lines[0]["labels"]}
    chunks.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(argv) == 0
    assert out.read_text() == first  # from the cache, as before the tampering


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o1777])
def test_a_run_directory_others_can_write_is_refused(
    loose: int, tmp_path: Path, data: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "labels.jsonl.run"
    run_dir.mkdir()
    run_dir.chmod(loose)
    assert main(label_args(data, tmp_path / "labels.jsonl", server.base_url)) == 2
    assert "can be written by" in capsys.readouterr().err
    assert mode(run_dir) == loose and list(run_dir.iterdir()) == []


@pytest.mark.skipif(not ROOT, reason="giving a directory to another user needs root")
def test_a_run_directory_of_another_user_is_refused(
    tmp_path: Path, data: Path, server: FaultServer
) -> None:
    run_dir = tmp_path / "labels.jsonl.run"
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, OTHER_UID, OTHER_UID)
    assert main(label_args(data, tmp_path / "labels.jsonl", server.base_url)) == 2
    assert list(run_dir.iterdir()) == []


# -- row 10: the Python API takes the run's lock --------------------------------------------


@pytest.mark.anyio
async def test_the_python_api_beside_a_held_run_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "d.jsonl", [i % 2 == 0 for i in range(8)])
    examples = load_dataset(tmp_path / "d.jsonl").examples
    config = LabelConfig(search=SearchConfig(steps=5, seed=1))
    run_dir = tmp_path / "run"
    backend = HashBackend()
    held = RunDir(run_dir)  # as `icm label` holds it for its whole run
    with held, pytest.raises(ConfigError, match="another icm run is using"):
        await label(examples, get_task("cities"), backend, config, run_dir=run_dir)
    assert backend.usage.calls == 0
    done = await label(examples, get_task("cities"), backend, config, run_dir=run_dir)
    assert done.summary.steps == 5 and (run_dir / "checkpoint.json").exists()


@pytest.mark.anyio
async def test_the_python_api_checks_the_task_and_warns_of_separators(tmp_path: Path) -> None:
    rows = [
        {"id": f"c{i}", "question": f"Q{i // 2}?", "choice": f"A{i}.\n\nClaim: x", "label": True}
        for i in range(4)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_dataset(tmp_path / "d.jsonl").examples
    backend = HashBackend()
    config = LabelConfig(search=SearchConfig(steps=2))
    with pytest.raises(TaskError, match="statement"):  # cities reads fields the data lacks
        await label(examples, get_task("cities"), backend, config)
    assert backend.usage.calls == 0
    with pytest.warns(UserWarning, match="blank line|separator"):
        await label(examples, get_task("truthfulqa"), backend, config)


# -- rows 11 and 13: exit codes and tampered summaries ---------------------------------------


def test_a_budget_stop_exits_unfinished_and_report_fails_on_it(
    tmp_path: Path, data: Path, server: FaultServer
) -> None:
    out = tmp_path / "labels.jsonl"
    argv = label_args(data, out, server.base_url, "--max-calls", "30")  # set-up included
    assert main(argv) == UNFINISHED
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    assert summary["stopped"] == "budget"
    assert main(["report", str(out), "--no-plot"]) == 0
    assert main(["report", str(out), "--no-plot", "--fail-on-warning"]) == UNFINISHED


def test_report_fails_on_an_interrupted_run_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    summary = {"summary": None, "interrupted": True, "ledger": {"invocations": 1}}
    path = out.with_name(out.name + ".summary.json")
    path.write_text(json.dumps(summary))
    assert main(["report", str(path)]) == 0
    assert main(["report", str(path), "--fail-on-warning"]) == UNFINISHED


TAMPERED: list[Any] = [
    {"summary": {"calls": "many"}, "trajectory": []},
    {"summary": {"label_counts": [1, 2]}, "trajectory": []},
    {"summary": {"converged": "perhaps"}, "trajectory": []},
    {"summary": {"violated_pairs": 7}, "trajectory": []},
    {"summary": {"ledger": {"total": {"calls": "x"}}}, "trajectory": []},
    {"summary": {}, "trajectory": [{"n": "one", "energy": 1}]},
    {"summary": {}, "trajectory": [1, 2]},
    {"summary": {}, "trajectory": [{"n": 1, "energy": "high"}]},
    {"summary": None, "interrupted": True, "ledger": {"invocations": "x"}},
    {"summary": None, "interrupted": True, "ledger": [1]},
    [1, 2, 3],
]


@pytest.mark.parametrize("tampered", TAMPERED, ids=range(len(TAMPERED)))
def test_a_tampered_summary_is_a_clear_error(
    tampered: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    out.write_text(json.dumps({"id": "a", "label": "True"}) + "\n")
    summary = out.with_name(out.name + ".summary.json")
    summary.write_text(json.dumps(tampered))
    assert main(["report", str(out), "--no-plot"]) == 2
    assert f"{summary}" in capsys.readouterr().err


# -- rows 13 and 14: checkpoints and trajectories are checked before they are trusted ----------


def _tamper_checkpoint(run_dir: Path, edit: Any) -> None:
    path = run_dir / "checkpoint.json"
    data = json.loads(path.read_text())
    edit(data["checkpoint"])
    path.write_text(json.dumps(data))


CHECKPOINTS: dict[str, Any] = {
    "n-true": lambda c: c.update(n=True),
    "n-negative": lambda c: c.update(n=-3),
    "negative-index": lambda c: c["labels"].update({"-1": 0}),
    "index-out-of-range": lambda c: c["labels"].update({"999": 0}),
    "label-out-of-range": lambda c: c["labels"].update({"0": 7}),
    "label-a-bool": lambda c: c["labels"].update({"0": True}),
}


@pytest.mark.parametrize("kind", sorted(CHECKPOINTS))
def test_a_tampered_checkpoint_is_a_clear_error(
    kind: str, tmp_path: Path, data: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = a_run(tmp_path, data, server)  # its checkpoint is resumed (and is final)
    run_dir = out.with_name(out.name + ".run")
    argv = label_args(data, out, server.base_url)
    _tamper_checkpoint(run_dir, CHECKPOINTS[kind])
    kept = out.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    assert "checkpoint.json" in capsys.readouterr().err
    assert out.read_bytes() == kept


@pytest.mark.parametrize("kind", ["wrong-types", "a-directory", "huge-line"])
def test_a_tampered_trajectory_is_a_clear_error(
    kind: str, tmp_path: Path, data: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = a_run(tmp_path, data, server)
    run_dir = out.with_name(out.name + ".run")
    argv = label_args(data, out, server.base_url)
    path = run_dir / "trajectory.jsonl"
    steps = [json.loads(line) for line in path.read_text().splitlines()]
    assert steps, "the run checkpointed after some steps"
    if kind == "wrong-types":
        steps[0]["accepted"] = "yes"
        steps[0]["example"] = [1]
        path.write_text("".join(json.dumps(s) + "\n" for s in steps))
    elif kind == "a-directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text(json.dumps({"n": 1, "pad": "x" * 100_000}) + "\n")
    capsys.readouterr()
    assert main(argv) == 2
    assert "trajectory.jsonl" in capsys.readouterr().err


def test_restart_refuses_a_directory_that_is_not_a_runs(
    tmp_path: Path, data: Path, server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = tmp_path / "documents"
    documents.mkdir(mode=0o700)
    mine = {"checkpoint.json": "my own file\n", "ledger.json": "{}\n", "notes.txt": "hi\n"}
    for name, text in mine.items():
        (documents / name).write_text(text)
    argv = label_args(data, tmp_path / "labels.jsonl", server.base_url)
    assert main([*argv, "--run-dir", str(documents), "--restart"]) == 2
    assert "not an icm run directory" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in documents.iterdir()} == mine


def test_restart_of_a_run_deletes_only_its_own_files(
    tmp_path: Path, data: Path, server: FaultServer
) -> None:
    out = a_run(tmp_path, data, server)
    run_dir = out.with_name(out.name + ".run")
    assert main([*label_args(data, out, server.base_url), "--restart"]) == 0
    assert {"checkpoint.json", "diagnostics.json"} <= {p.name for p in run_dir.iterdir()}


# -- row 12: the native engine --------------------------------------------------------------


@pytest.fixture
def model_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("ICM_MODEL_CACHE", str(tmp_path / "models"))
    for name in ("ICM_LLAMA_SERVER", "ICM_LOCAL_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    binary = built_binary()
    binary.parent.mkdir(mode=0o700, parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o700)
    return binary


def test_a_built_binary_of_this_user_is_used(model_cache: Path) -> None:
    assert native_server() == model_cache


@pytest.mark.parametrize("loose", ["file", "directory"])
def test_a_binary_others_could_have_planted_is_not_run(loose: str, model_cache: Path) -> None:
    (model_cache if loose == "file" else model_cache.parent).chmod(0o777)
    with pytest.warns(RuntimeWarning, match="can be written by others"):
        assert native_server() is None


def test_a_linked_binary_is_not_run(model_cache: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    model_cache.rename(planted)
    model_cache.symlink_to(planted)
    with pytest.warns(RuntimeWarning, match="not a regular file"):
        assert native_server() is None


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_a_binary_of_another_user_is_not_run(model_cache: Path) -> None:
    os.chown(model_cache, OTHER_UID, OTHER_UID)
    with pytest.warns(RuntimeWarning, match="another user"):
        assert native_server() is None


def test_a_binary_named_explicitly_is_run(
    model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_cache.parent.chmod(0o777)  # the built one would be refused
    named = tmp_path / "my-llama-server"
    named.write_text("#!/bin/sh\n")
    named.chmod(0o755)
    monkeypatch.setenv("ICM_LLAMA_SERVER", str(named))
    assert native_server() == named
