"""The bad-input corpus: every kind of wrong input, driven through the ``icm`` command.

Each case must end with exit code 2, one ``icm: error:`` message that names what is wrong and
where (file and line, field, option, endpoint), no traceback, and no output file (not even a
partial or temporary one). The backend is a real HTTP server (``fault_server.py``), healthy
unless the case is about the server, so that only the intended problem can fire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from icm_client.cli import main

GOOD = [
    {"id": f"c{i}", "statement": f"The city of X{i // 2} is in Y{i}.", "city": f"X{i // 2}"}
    | {"country": f"Y{i}"}
    for i in range(6)
]
CLOSED_PORT = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Case:
    """``setup(dir)`` writes the inputs into ``dir`` and returns the CLI arguments that
    differ from the defaults (``{"input": ..., "--task": ...}``; None drops an option)."""

    name: str
    setup: Callable[[Path], dict[str, str | None]]
    expect: tuple[str, ...]
    server: dict[str, Any] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # must not be shown (credentials)


def data(text: str | bytes, name: str = "data.jsonl", **args: str | None) -> Any:
    def setup(d: Path) -> dict[str, str | None]:
        path = d / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return {"input": str(path), **args}

    return setup


def task_file(text: str, name: str = "task.toml", rows: list[Any] = GOOD) -> Any:
    def setup(d: Path) -> dict[str, str | None]:
        (d / name).write_text(text)
        (d / "data.jsonl").write_text(jsonl(rows))
        return {"input": str(d / "data.jsonl"), "--task": str(d / name)}

    return setup


def good(**args: str | None) -> Any:
    return data(jsonl(GOOD), "data.jsonl", **args)


HUGE = {"id": "huge", "statement": "The city of Z is in " + "W " * 300 + ".", "city": "Z"}
LONG = [*GOOD, HUGE | {"country": "W"}]

CASES = [
    # -- the dataset file -----------------------------------------------------------------
    Case("empty-file", data(""), ("data.jsonl", "file is empty")),
    Case("only-blank-lines", data("\n\n  \n"), ("data.jsonl", "file is empty")),
    Case(
        "invalid-json-line-3",
        data(jsonl(GOOD[:2]) + '{"id": "c9", "statement": \n'),
        ("data.jsonl:3", "invalid JSON"),
    ),
    Case("json-not-a-list", data('{"a": 1}', name="data.json"), ("data.json", "list of records")),
    Case("json-empty-list", data("[]", name="data.json"), ("data.json", "holds no records")),
    Case(
        "record-not-an-object",
        data(jsonl([GOOD[0], [1, 2]])),
        ("data.jsonl:2", "record is a JSON array"),
    ),
    Case(
        "wrong-field-type",
        data(jsonl([GOOD[0], GOOD[1] | {"city": {"name": "X0"}}])),
        ("data.jsonl:2", "field 'city'", "JSON object"),
    ),
    Case(
        "bad-id-type",
        data(jsonl([GOOD[0] | {"id": 1.5}])),
        ("data.jsonl:1", "field 'id'", "string or an integer"),
    ),
    Case(
        "missing-template-field",
        data(jsonl([GOOD[0], {"id": "c1", "city": "X0", "country": "Y1"}])),
        ("data.jsonl", "example 'c1'", "field 'statement'"),
    ),
    Case(
        "empty-records",
        data(jsonl([{}, {}])),
        ("data.jsonl", "field 'statement'"),
    ),
    Case(
        "duplicate-ids",
        data(jsonl([GOOD[0], GOOD[1], GOOD[2] | {"id": "c0"}])),
        ("data.jsonl:3", "duplicate id 'c0'", "first used at", "data.jsonl:1"),
    ),
    Case(
        "json-nesting-bomb-in-a-line",
        data(jsonl(GOOD[:1]) + '{"id": "n", "statement": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
        ("data.jsonl:2", "nests too deeply"),
    ),
    Case(
        "json-nesting-bomb-in-an-array",
        data("[" * 100_000 + "]" * 100_000, name="data.json"),
        ("data.json", "nests too deeply"),
    ),
    Case(
        "int-of-5000-digits",
        data(jsonl(GOOD[:1]) + '{"id": 1' + "0" * 5000 + ', "statement": "s"}\n'),
        ("data.jsonl:2", "invalid JSON", "digits"),
    ),
    Case(
        "lone-surrogate-in-a-field",
        data(jsonl(GOOD[:1]) + '{"id": "s", "statement": "caf\\ud800e"}\n'),
        ("data.jsonl:2", "field 'statement'", "lone surrogate", "\\ud800"),
    ),
    Case(
        "lone-surrogate-in-an-id",
        data(jsonl(GOOD[:1]) + '{"id": "\\udc00x", "statement": "s"}\n'),
        ("data.jsonl:2", "field 'id'", "lone surrogate"),
    ),
    Case(
        "non-utf8-bytes",
        data(jsonl(GOOD[:2]).encode() + b'{"id": "c9", "statement": "caf\xe9"}\n'),
        ("data.jsonl:3", "not UTF-8", "0xe9"),
    ),
    Case(
        "csv-ragged-row",
        data("id,statement,city,country\nc0,The city of A is in B.,A,B\nc1,oops\n", "d.csv"),
        ("d.csv:3", "2 cells", "4 columns"),
    ),
    Case(
        "csv-repeated-column",
        data("id,city,city\nc0,A,B\n", "d.csv"),
        ("d.csv:1", "repeated column names"),
    ),
    Case(
        "bad-gold-label",
        data(jsonl([GOOD[0] | {"label": "very much so"}])),
        ("data.jsonl:1", "field 'label'", "not a single label word"),
    ),
    Case("missing-file", lambda d: {"input": str(d / "nope.jsonl")}, ("nope.jsonl", "not found")),
    Case("directory-as-input", lambda d: {"input": str(d)}, ("is a directory",)),
    Case("unknown-sample", lambda d: {"input": "sample:nope"}, ("no bundled sample 'nope'",)),
    Case("negative-limit", good(**{"--limit": "-3"}), ("limit must be at least 1", "-3")),
    Case(
        "rename-absent-field",
        good(**{"--field": "town=city"}),
        ("fields to rename ['town'] are in no record",),
    ),
    Case("malformed-field-option", good(**{"--field": "town"}), ("--field", "'town'")),
    # -- the task -------------------------------------------------------------------------
    Case("unknown-task", good(**{"--task": "no-such-task"}), ("unknown task 'no-such-task'",)),
    Case(
        "task-toml-syntax-error",
        task_file('name = "t"\ntemplate = "{statement}\nlabels = [" A", " B"]\n'),
        ("task.toml", "invalid TOML", "line 2"),
    ),
    Case(
        "task-unknown-key",
        task_file('name = "t"\ntemplate = "{statement} is"\nlabelz = [" A", " B"]\n'),
        ("task.toml", "labelz: unknown key"),
    ),
    Case(
        "task-positional-placeholder",
        task_file('name = "t"\ntemplate = "{} is"\n'),
        ("task.toml", "field 'template'", "positional"),
    ),
    Case(
        "task-template-attribute",
        task_file('name = "t"\ntemplate = "{statement.__class__.__mro__} is"\n'),
        ("task.toml", "field 'template'", "not a plain field name"),
        absent=("<class",),
    ),
    Case(
        "task-template-format-spec",
        task_file('name = "t"\ntemplate = "{statement:>900000000} is"\n'),
        ("task.toml", "field 'template'", "{statement:>900000000}", "no attributes"),
    ),
    Case(
        "task-template-index",
        task_file('name = "t"\ntemplate = "{statement[0]} is"\n'),
        ("task.toml", "not a plain field name"),
    ),
    Case(
        "task-json-nesting-bomb",
        task_file('{"name": "t", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", name="t.json"),
        ("t.json", "invalid JSON"),
    ),
    Case(
        "task-label-trailing-space",
        task_file('name = "t"\ntemplate = "{statement} is"\nlabels = [" A ", " B"]\n'),
        ("task.toml", "field 'labels'", "ends in whitespace"),
    ),
    Case(
        "task-template-field-not-in-data",
        task_file('name = "t"\ntemplate = "{claim} is"\n'),
        ("data.jsonl", "field 'claim'", "(template)", "the fields are: city, country"),
    ),
    Case(
        "label-word-not-one-token",
        task_file('name = "t"\ntemplate = "{statement} It is"\nlabels = [" Very true", " No"]\n'),
        ("task 't'", "field 'labels'", "' Very true' is 2 tokens", "single next token"),
    ),
    # -- options and the output -----------------------------------------------------------
    Case("bad-alpha", good(**{"--alpha": "-1"}), ("--alpha",)),
    Case("zero-concurrency", good(**{"--concurrency": "0"}), ("--concurrency", "at least 1")),
    Case("zero-top-k", good(**{"--top-k": "0"}), ("top_k", "at least 1")),
    Case(
        "out-in-missing-directory",
        good(**{"--out": "{out}/no/such/dir/labels.jsonl"}),
        ("no/such/dir", "does not exist"),
    ),
    Case("out-is-a-directory", good(**{"--out": "{out}"}), ("it is a directory",)),
    Case(
        "out-under-a-file",
        good(**{"--out": "{in}/data.jsonl/labels.jsonl"}),
        ("data.jsonl", "is a file, not a directory"),
    ),
    Case(
        "summary-is-a-directory",
        good(**{"--summary": "{in}"}),
        ("it is a directory",),
    ),
    Case(
        "cache-dir-is-a-file",
        good(**{"--no-cache": None, "--cache-dir": "{in}/data.jsonl"}),
        ("cannot open the score cache", "data.jsonl"),
    ),
    # -- the server -----------------------------------------------------------------------
    Case("url-wrong-scheme", good(**{"--base-url": "ftp://x/v1"}), ("invalid base URL",)),
    Case("url-no-host", good(**{"--base-url": "http:///v1"}), ("invalid base URL",)),
    Case("url-bad-port", good(**{"--base-url": "http://localhost:99999"}), ("invalid base URL",)),
    Case(
        "url-with-query",
        good(**{"--base-url": "http://user:pw@localhost:8000/v1?x=1"}),
        ("invalid base URL", "'http://localhost:8000/v1?***'"),
        absent=("pw", "x=1"),  # a query string may carry a token: never printed
    ),
    Case(
        "unreachable-host",
        good(**{"--base-url": CLOSED_PORT}),
        ("cannot reach the server", "127.0.0.1:9", "is the server running?"),
    ),
    Case(
        "wrong-url-path",
        good(**{"--base-url": "{root}/api/v2"}),
        ("/api/v2/v1/models", "HTTP 404", "wrong URL"),
    ),
    Case(
        "wrong-api-key",
        good(**{"--api-key-env": "ICM_TEST_WRONG_KEY"}),
        ("refused a test request", "/v1/models", "HTTP 401", "$ICM_TEST_WRONG_KEY"),
        {"api_key": "sk-right"},
        absent=("sk-wrong", "sk-right"),  # the server echoes the key it was sent
    ),
    Case(
        "missing-api-key",
        good(**{"--api-key-env": "ICM_TEST_UNSET_KEY"}),
        ("HTTP 401", "check the API key", "$ICM_TEST_UNSET_KEY"),
        {"api_key": "sk-right"},
    ),
    Case(
        "unknown-model",
        good(**{"--model": "no-such-model"}),
        ("/v1/completions", "HTTP 404", "no-such-model", "unknown model"),
    ),
    Case(
        "example-longer-than-context",
        data(jsonl(LONG)),
        ("example 'huge'", "data.jsonl", "does not fit the model's context", "HTTP 400"),
        {"n_ctx": 256},
    ),
    Case(
        "context-overflow-llamacpp",
        data(jsonl(LONG)),
        ("example 'huge'", "exceeds the available context size"),
        {"n_ctx": 256, "shape": "llamacpp"},
    ),
    Case(
        "field-of-megabytes-refused-before-sending",
        data(jsonl([*GOOD, GOOD[0] | {"id": "big", "statement": "word " * 400_000}])),
        ("example 'big'", "data.jsonl", "2,000,", "context holds 4,096", "was not sent"),
        {"n_ctx": 4096, "report_context": True},
    ),
    Case(
        "exact-search-larger-than-the-context",
        good(**{"--context-window": "64", "--strategy": "exact"}),
        ("the exact strategy", "6 examples", "context holds 64", "icm scale"),
    ),
    Case(
        "server-without-logprobs",
        good(),
        ("refused a test request", "/v1/completions", "no logprobs"),
        {"rate": 1.0, "kinds": ("no_logprobs",)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICM_TEST_WRONG_KEY", "sk-wrong")
    monkeypatch.delenv("ICM_TEST_UNSET_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    outdir.mkdir()
    with FaultServer(**case.server) as server:
        given = case.setup(indir)
        inputs_before = sorted(str(p) for p in indir.rglob("*"))
        options: dict[str, str | None] = {
            "--task": "cities",
            "--out": str(outdir / "labels.jsonl"),
            "--base-url": server.base_url,
            "--no-cache": "",
            "--quiet": "",
        }
        options.update({k: v for k, v in given.items() if k != "input"})
        args = ["label", str(given["input"])]
        for option, value in options.items():
            if value is None:
                continue
            args.append(option)
            if value:
                root = server.base_url.removesuffix("/v1")
                value = value.format(out=outdir, root=root, **{"in": indir})
                args.append(value)
        code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    head, error, _ = err.partition("icm: error: ")  # at most the run's plan lines before it
    assert error and all(line.startswith("icm: ") for line in head.splitlines())
    assert "Traceback" not in err
    for fragment in case.expect:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    for secret in case.absent:
        assert secret not in err
    assert list(outdir.iterdir()) == []  # no output, no partial output, no temporary file
    assert sorted(str(p) for p in indir.rglob("*")) == inputs_before  # nothing added there


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)
