"""What ``icm label`` writes, ``icm report`` and ``icm export`` read back, whatever the text
(ids and fields with U+2028, U+2029, U+0085, vertical tab, form feed, emoji), and a full
disk is a message naming the file, not a traceback; and every command reads whatever ``icm label`` /
``icm scale`` / ``icm export`` wrote, including null labels (skipped with a count) and run
directories.

One test runs every producer once against the stand-in server and every consumer (eval,
export, report) on every output, as a file and as a run directory."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from fault_server import FaultServer, fault_server
from processes import HANG_S

from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.dataset import load_dataset
from icm_client.runs.files import read_labels

ODD = ["a\u2028b", "c\u2029d", "e\x85f", "g\x0bh", "i\x0cj", "k\x1cl", "emoji-🦜"]


def rows() -> list[dict[str, object]]:
    out = []
    for i, odd in enumerate(ODD * 2):
        out.append(
            {
                "id": f"{odd}-{i}",
                "statement": f"The city of X{i // 2} {odd} is in Y{i}.",
                "city": f"X{i // 2} {odd}",
                "country": f"Y{i}",
                "label": i % 2 == 0,
            }
        )
    return out


def test_jsonl_lines_end_at_newline_only(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()))
    dataset = load_dataset(path)
    assert [ex.id for ex in dataset.examples] == [r["id"] for r in rows()]


def test_label_output_reads_back_in_report_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()))
    out = tmp_path / "labels.jsonl"
    with FaultServer() as server:
        args = ["label", str(data), "--task", "cities", "--out", str(out), "--quiet"]
        args += ["--no-cache", "--base-url", server.base_url, "--steps", "6"]
        assert main(args) == 0, capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert text.splitlines() == text.split("\n")[:-1]  # any JSONL reader splits it right
    assert [r.id for r in read_labels(out).rows] == [r["id"] for r in rows()]
    assert main(["report", str(out), "--no-plot"]) == 0, capsys.readouterr().err
    exported = tmp_path / "export.jsonl"
    export = ["export", str(out), "--format", "labels", "--out", str(exported)]
    assert main(export) == 0, capsys.readouterr().err
    ids = [json.loads(line)["id"] for line in exported.read_text().split("\n") if line]
    assert ids == [r["id"] for r in rows()]


def test_a_full_disk_while_checkpointing_names_the_file_without_a_traceback(
    tmp_path: Path,
) -> None:
    """A file size limit (EFBIG, as a full disk gives ENOSPC) that the first checkpoint
    (several KiB: the RNG state) cannot fit under."""

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    out = tmp_path / "labels.jsonl"
    with FaultServer() as server:
        args = "label sample:cities --task cities --limit 8 --steps 8 --quiet --no-cache"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "icm_client.cli",
                *args.split(),
                "--out",
                str(out),
                "--base-url",
                server.base_url,
            ],
            capture_output=True,
            text=True,
            preexec_fn=small_files,
            timeout=HANG_S,
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # the first file to outgrow the limit: the checkpoint, or the spending journal
    assert re.search(
        r"(checkpoint\.json|spending\.jsonl): cannot write: File too large", proc.stderr
    )
    assert not out.exists()
    assert [p.name for p in tmp_path.rglob(".checkpoint.json.*")] == []  # no temp file left


def test_limit_reads_only_the_records_it_needs(tmp_path: Path) -> None:
    """``--limit`` streams: what lies past the first N records is never read (here it is
    not even UTF-8 or JSON, and would fail a whole-file read)."""
    from icm_client.errors import DataError

    path = tmp_path / "big.jsonl"
    good = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()[:3])
    path.write_bytes(good.encode() + b"\xff not json at all\n" * 10_000)
    assert len(load_dataset(path, limit=3)) == 3
    with pytest.raises(DataError, match=r"big.jsonl:4: not UTF-8"):
        load_dataset(path)


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
