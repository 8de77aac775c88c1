"""Stumble 2 of issue 18: every command reads whatever ``icm label`` / ``icm scale`` /
``icm export`` wrote, including null labels (skipped with a count) and run directories.

One test runs every producer once against the stand-in server and every consumer (eval,
export, report) on every output, as a file and as a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import FaultServer, fault_server

from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.runs.files import read_labels

DATA = "sample:cities"


def produce(tmp_path: Path, server: FaultServer) -> dict[str, Path]:
    backend = ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    label = tmp_path / "label.jsonl"
    common = ["--task", "cities", "--strategy", "bounded", "--context-size", "4", *backend]
    code = main(["label", DATA, "--out", str(label), "--max-calls", "60", *common])
    stopped = json.loads(label.with_name("label.jsonl.summary.json").read_text())["summary"]
    assert code == (UNFINISHED if stopped["unlabeled"] else 0)
    scale = tmp_path / "scale.jsonl"
    assert (
        main(
            [
                *("scale", DATA, "--out", str(scale), *common),
                *("--context-window", "1000", "--seed-examples", "20", "--steps", "10"),
            ]
        )
        == 0
    )
    exported = tmp_path / "exported.jsonl"
    assert main(["export", str(label), "--format", "labels", "--out", str(exported)]) == 0
    return {
        "label": label,
        "label-run-dir": tmp_path / "label.jsonl.run",
        "scale": scale,
        "scale-run-dir": tmp_path / "scale.jsonl.run",
        "export": exported,
    }


def test_every_consumer_reads_every_producer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fault_server() as server:
        outputs = produce(tmp_path, server)
        label_rows = [json.loads(x) for x in outputs["label"].read_text().splitlines()]
        nulls = sum(r["label"] is None for r in label_rows)
        assert nulls > 0  # the budget stopped the search: the case that used to fail
        printed = capsys.readouterr().out  # stumble 7: the count says how many got a label
        assert f"labeled {80 - nulls} of 80 examples" in printed
        assert f"{nulls} not reached: label null" in printed
        for name, path in outputs.items():
            read = read_labels(path)
            expected_nulls = nulls if name.startswith("label") else 0
            total = 80 - nulls if name == "export" else 80  # export writes labeled rows only
            assert len(read.rows) + len(read.unlabeled) == total, name
            assert len(read.unlabeled) == expected_nulls, name

            out = tmp_path / f"eval-{name}.json"
            argv = ["eval", DATA, "--split", "0.5", "--task", "cities", "--labels", str(path)]
            argv += ["--out", str(out), "--conditions", "icm", "--seeds", "1", "--quiet"]
            argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
            assert main([*argv, "--max-demo-tokens", "200"]) == 0, capsys.readouterr().err
            err = capsys.readouterr().err
            if name.startswith("label"):
                assert f"{nulls} of 80 rows" in err and "skipped" in err

            again = tmp_path / f"again-{name}.jsonl"
            argv = ["export", str(path), "--format", "labels", "--out", str(again)]
            assert main([*argv, "--data", DATA]) == 0, capsys.readouterr().err
            assert len(again.read_text().splitlines()) == len(read.rows)

            if name != "export":  # a run's outputs have a summary to report on
                assert main(["report", str(path), "--no-plot"]) == 0, capsys.readouterr().err
                printed = capsys.readouterr().out
                assert "# ICM run report" in printed


def test_a_file_of_only_null_labels_says_so(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "a", "label": null, "confidence": null}\n')
    from icm_client.errors import DataError

    with pytest.raises(DataError, match="no labeled rows"):
        read_labels(path)
