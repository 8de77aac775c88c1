"""Nothing lost: an output is never the input or another output, one run at a time per
run directory, no new labels beside an old summary, no litter from killed writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fault_server import FaultServer

from icm_client.cli import main
from icm_client.cli._io import write_labels_then_summary
from icm_client.errors import ConfigError
from icm_client.runs.checkpoint import TRAJECTORY, RunStore
from icm_client.runs.outputs import RunLock, stale_temps

SAMPLE = Path(__file__).parents[2] / "icm_client" / "samples" / "cities_sample.jsonl"


def label_args(data: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        "label",
        str(data),
        "--task",
        "cities",
        "--limit",
        "8",
        "--steps",
        "8",
        "--strategy",
        "bounded",
        "--context-size",
        "4",
        "--quiet",
        "--no-cache",
        "--out",
        str(out),
        "--base-url",
        base_url,
        *extra,
    ]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(SAMPLE.read_bytes())
    return path


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "relative"])
@pytest.mark.parametrize("option", ["--out", "--summary"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    how: str, option: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = data.read_bytes()
    target = data
    if how == "symlink":
        target = tmp_path / "link.jsonl"
        target.symlink_to(data)
    elif how == "hardlink":
        target = tmp_path / "hard.jsonl"
        os.link(data, target)
    elif how == "relative":
        (tmp_path / "sub").mkdir()
        target = tmp_path / "sub" / ".." / "data.jsonl"
    out = target if option == "--out" else tmp_path / "labels.jsonl"
    extra = ["--summary", str(target)] if option == "--summary" else []
    code = main(label_args(data, out, "http://127.0.0.1:9/v1", *extra))
    err = capsys.readouterr().err
    assert code == 2
    assert "is the input file" in err
    assert data.read_bytes() == before


def test_summary_equal_to_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    code = main(label_args(SAMPLE, out, "http://127.0.0.1:9/v1", "--summary", str(out)))
    assert code == 2
    assert "is the same file as --out" in capsys.readouterr().err


def test_a_second_run_on_the_same_outputs_fails_at_once_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    with FaultServer() as server, RunLock(tmp_path / "labels.jsonl.run"):
        code = main(label_args(SAMPLE, out, server.base_url))
    err = capsys.readouterr().err
    assert code == 2
    assert "another icm run is using" in err and f"process {os.getpid()}" in err
    assert sum(server.requests.values()) == 0  # nothing paid for
    assert not out.exists()
    # released: the same command now runs
    with FaultServer() as server:
        assert main(label_args(SAMPLE, out, server.base_url)) == 0
    assert not (tmp_path / "labels.jsonl.run" / "lock.json").exists()


def test_an_interleaved_trajectory_is_refused_on_resume(tmp_path: Path) -> None:
    import random

    from icm_client.search.anneal import Checkpoint

    store = RunStore(tmp_path, "fp")
    store.save(Checkpoint(4, {0: 1}, random.Random(0).getstate()))
    step: dict[str, object] = {
        "temperature": 1.0,
        "example": 0,
        "changed": True,
        "accepted": True,
        "energy": 0.0,
    }
    step |= {"candidate_energy": None, "labeled": 1, "inconsistencies": 0}
    lines = [{"n": n, **step} for n in (1, 2, 2, 3, 3, 4)]
    (tmp_path / TRAJECTORY).write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(ConfigError, match=r"records step 2, expected 3.*--restart"):
        store.load()


def test_new_labels_are_never_left_beside_an_old_summary(tmp_path: Path) -> None:
    labels, summary = tmp_path / "labels.jsonl", tmp_path / "labels.jsonl.summary.json"
    write_labels_then_summary(labels, [{"id": "a", "label": "True"}], summary, {"run": 1})
    assert json.loads(summary.read_text()) == {"run": 1}
    # the second run dies while writing its summary (here: a value JSON cannot hold)
    with pytest.raises(TypeError):
        write_labels_then_summary(labels, [{"id": "a", "label": "False"}], summary, {"x": {1j}})
    assert json.loads(labels.read_text())["label"] == "False"
    assert not summary.exists()  # not the first run's summary beside the second run's labels
    assert list(stale_temps(summary)) == []


def test_temp_files_of_killed_writes_are_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    run_dir = tmp_path / "labels.jsonl.run"
    run_dir.mkdir()
    litter = [
        tmp_path / ".labels.jsonl.ab12cd_9",
        tmp_path / ".labels.jsonl.summary.json.zzzzzzzz",
        run_dir / ".checkpoint.json.k3j4h5g6",
        run_dir / ".diagnostics.json.00000000",
    ]
    for path in litter:
        path.write_text("partial")
    keep = tmp_path / ".labels.jsonl.notmine-file"
    keep.write_text("not a temp file of ours")
    with FaultServer() as server:
        assert main(label_args(SAMPLE, out, server.base_url)) == 0
    assert not any(p.exists() for p in litter)
    assert keep.exists()
