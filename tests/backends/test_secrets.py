"""The API key never leaves the Authorization header.

Runs against ``fault_server.py`` with a key from the environment and from an explicit
argument, through faults whose messages and bodies quote the key back (as careless servers
and proxies do), and through a wrong key; then every artifact is searched for the key: labels,
summary, every file of the cache directory as raw bytes (SQLite database, WAL), everything
printed, every log record, every warning, and the messages, reprs and tracebacks of the errors
and of every layer of the backend.
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from pathlib import Path

import pytest
from fault_server import TRANSIENT, FaultServer

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.cli import main
from icm_client.client import Retry, ScoringClient
from icm_client.dataset import load_dataset
from icm_client.errors import PermanentBackendError
from icm_client.run import LabelConfig, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

KEY = "sk-test-SECRET-4f1c9a7e2b6d8035"
OTHER = "sk-test-OTHER-0000000000000000"
FAST = [k for k in TRANSIENT if k != "slow"]  # the CLI's own (real) backoff: keep it short
SAMPLES = Path(__file__).parents[2] / "icm_client" / "samples"


def assert_nowhere(secret: str, *texts: str, files: Path | None = None) -> None:
    for i, text in enumerate(texts):
        assert secret not in text, f"the key is in text #{i}: {text[:200]!r}"
    if files is not None:
        checked = 0
        for path in files.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"the key is in {path}"
                checked += 1
        assert checked > 0


def error_texts(exc: BaseException) -> list[str]:
    """Message, repr and full traceback (chained causes included) of ``exc``."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def cli_args(server: FaultServer, tmp: Path, *extra: str) -> list[str]:
    return [
        "label",
        "sample:cities",
        "--task",
        "cities",
        "--limit",
        "10",
        "--steps",
        "10",
        "--strategy",
        "bounded",
        "--context-size",
        "4",
        "--out",
        str(tmp / "out" / "labels.jsonl"),
        "--cache-dir",
        str(tmp / "cache"),
        "--base-url",
        server.base_url,
        *extra,
    ]


def test_cli_run_with_key_from_env_leaks_it_nowhere(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ICM_SECRET_KEY", KEY)
    (tmp_path / "out").mkdir()
    caplog.set_level(logging.DEBUG)
    with (
        FaultServer(
            api_key=KEY, rate=0.15, kinds=FAST, max_streak=1, retry_after="0", echo_auth=True
        ) as server,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        code = main(cli_args(server, tmp_path, "--api-key-env", "ICM_SECRET_KEY"))
    out, err = capsys.readouterr()
    assert code == 0, err
    # the key was really used, and the faults that quote it back really happened
    assert set(server.auth_headers) == {f"Bearer {KEY}"}
    assert sum(server.injected.values()) > 0
    summary = json.loads((tmp_path / "out" / "labels.jsonl.summary.json").read_text())
    assert summary["summary"]["retries"] > 0
    assert any((tmp_path / "cache").iterdir())
    logged = [f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records]
    assert logged  # httpx logs every request
    assert_nowhere(KEY, out, err, *logged, *(str(w.message) for w in caught), files=tmp_path)


@pytest.mark.parametrize("when", ["preflight", "mid-run"])
def test_cli_with_a_wrong_or_refused_key_leaks_it_nowhere(
    when: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong key fails the preflight (exit 2); a key refused later stops the run (exit 1).
    Either way the server's 401 message quotes the key, and the key is shown nowhere."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    (tmp_path / "out").mkdir()
    caplog.set_level(logging.DEBUG)
    if when == "preflight":
        server = FaultServer(api_key=OTHER)
    else:  # the right key, refused with a 401 once the run is under way
        server = FaultServer(api_key=KEY, rate=0.1, kinds=("401",), after=8, echo_auth=True)
    with server:
        code = main(cli_args(server, tmp_path, "--quiet"))
    out, err = capsys.readouterr()
    assert code == (2 if when == "preflight" else 1)
    assert "HTTP 401" in err and "check the API key (from $OPENAI_API_KEY" in err
    assert set(server.auth_headers) == {f"Bearer {KEY}"}
    logged = [f"{r.getMessage()} {r.args!r}" for r in caplog.records]
    assert_nowhere(KEY, out, err, *logged, files=tmp_path)
    written = [p.name for p in (tmp_path / "out").iterdir() if p.is_file()]
    assert "labels.jsonl" not in written  # no labels (an interrupted run's summary at most)


@pytest.mark.anyio
async def test_explicit_key_in_no_repr_error_cache_or_result(tmp_path: Path) -> None:
    dataset = load_dataset(SAMPLES / "cities_sample.jsonl", limit=8)
    config = LabelConfig(strategy="bounded", context_size=4, search=SearchConfig(steps=8))
    with FaultServer(
        api_key=KEY, rate=0.2, kinds=TRANSIENT, max_streak=1, slow_s=1.0, echo_auth=True
    ) as server:
        inner = OpenAICompletions(server.base_url, api_key=KEY, api_key_env="NONE_SET", timeout=0.5)
        fast = Retry(base_wait=0.001, max_wait=0.01)  # fast waits, the same policies
        backend = ScoringClient(inner, cache=tmp_path / "cache", retry=fast)
        result = await label(dataset.examples, get_task("cities"), backend, config)
        parts = [backend, backend.cache, inner]
        texts = [repr(x) for x in parts] + [str(vars(x)) for x in parts]
        texts += [result.model_dump_json(), backend.identity]

        # every transient fault, each quoting the key, given up on: the final error
        flaky = ScoringClient(
            OpenAICompletions(server.base_url, api_key=KEY, timeout=0.5),
            cache=False,
            retry=Retry(max_attempts=1),
        )
        server.rate, server.max_streak, server.echo_auth = 1.0, None, True
        for kind in [*TRANSIENT, "401", "400", "404"]:
            server.kinds = (kind,)
            with pytest.raises(Exception) as info:
                await flaky.score(ScoreRequest(f"Probe {kind}", (" True", " False")))
            texts += error_texts(info.value)
        wrong = OpenAICompletions(server.base_url, api_key=OTHER, timeout=0.5)
        server.rate = 0.0
        with pytest.raises(PermanentBackendError) as refused:
            await wrong.score(ScoreRequest("Probe", (" True", " False")))
        texts += error_texts(refused.value)
        for b in (backend, flaky, wrong):
            await b.aclose()
    assert server.injected and f"Bearer {KEY}" in server.auth_headers
    assert_nowhere(KEY, *texts, files=tmp_path / "cache")
    assert_nowhere(OTHER, *error_texts(refused.value))


# -- keys an HTTP header cannot carry, credentials in the URL, the key in other forms ------

BAD_KEYS = {
    "trailing-cr": KEY + "\r",
    "trailing-lf": KEY + "\n",
    "crlf-inside": KEY[:10] + "\r\nX-Evil: 1\r\n" + KEY[10:],
    "non-ascii": KEY[:10] + "é" + KEY[10:],
    "escape": KEY + "\x1b",
    "space": KEY[:10] + " " + KEY[10:],
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_a_key_no_header_can_carry_is_refused_without_printing_it(
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = BAD_KEYS[name]
    monkeypatch.setenv("ICM_SECRET_KEY", bad)
    (tmp_path / "out").mkdir()
    caplog.set_level(logging.DEBUG)
    with FaultServer(api_key=KEY, echo_auth=True) as server:
        code = main(cli_args(server, tmp_path, "--api-key-env", "ICM_SECRET_KEY", "--quiet"))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err and "$ICM_SECRET_KEY" in err and "(not shown)" in err
    assert server.auth_headers == []  # refused before any request
    logged = [r.getMessage() for r in caplog.records]
    assert_nowhere(KEY[10:], out, err, *logged)  # not even the part after the bad character


@pytest.mark.parametrize("password", [KEY, "p%40ss%2Fw0rd-" + KEY[8:]])
def test_credentials_in_the_url_are_refused_and_never_printed(
    password: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64
    import urllib.parse

    (tmp_path / "out").mkdir()
    with FaultServer(echo_auth=True) as server:
        url = server.base_url.replace("//", f"//user:{password}@", 1)
        args = [url if a == server.base_url else a for a in cli_args(server, tmp_path, "--quiet")]
        code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and "carries credentials" in err, err
    assert server.auth_headers == []
    plain = urllib.parse.unquote(password)
    basic = base64.b64encode(f"user:{plain}".encode()).decode()
    assert_nowhere(password, out, err)
    assert_nowhere(plain, out, err)
    assert_nowhere(basic, out, err)


@pytest.mark.anyio
async def test_a_server_quoting_the_key_in_any_form_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Raw, percent-encoded, base64 and Basic-encoded echoes of the key, in error messages,
    the garbled-body message, reprs, tracebacks and log lines."""
    import base64
    import urllib.parse

    import httpx2

    key = KEY + "/+="
    forms = [
        key,
        urllib.parse.quote(key, safe=""),
        urllib.parse.quote_plus(key),
        base64.b64encode(key.encode()).decode(),
        base64.b64encode(f":{key}".encode()).decode(),
    ]
    echo = " ".join(forms)
    replies = {
        "401": httpx2.Response(401, json={"error": {"message": f"bad key {echo}"}}),
        "500": httpx2.Response(500, text=f"<html>oops {echo}</html>"),
        "garbled": httpx2.Response(200, text=f"{echo} {{not json"),
    }
    texts: list[str] = []
    for kind, reply in replies.items():
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r, x=reply: x))
        backend = OpenAICompletions(
            "https://api.example.invalid/v1", "m", api_key=key, provider="openai", client=client
        )
        with pytest.raises(Exception) as info:
            await backend.score(ScoreRequest(f"Probe {kind}", (" True", " False")))
        texts += [*error_texts(info.value), repr(backend)]
        await client.aclose()
    logging.getLogger("icm_test").warning("a careless log line: %s", echo)
    texts += [r.getMessage() for r in caplog.records]
    texts.append(warnings.formatwarning(f"a careless warning: {echo}", UserWarning, "x.py", 1))
    for form in forms:
        assert_nowhere(form, *texts)
    assert any("***" in t for t in texts)


URL_SECRET = "tok-QUERY-9d3e7a1c55b0"


@pytest.mark.parametrize("command", ["label", "scale", "doctor"])
@pytest.mark.parametrize(
    "suffix",
    [f"?key={URL_SECRET}", f"?a=1&api_key={URL_SECRET}#x", f"#access_token={URL_SECRET}"],
)
def test_a_token_in_the_urls_query_or_fragment_is_never_printed(
    command: str, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 24 row 9: the whole URL used to be quoted in the error, token included."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "q", "choice": "c"}\n')
    with FaultServer() as server:
        url = server.base_url + suffix
        if command == "doctor":
            argv = ["doctor", url]
        else:
            argv = [command, str(data), "--task", "truthfulqa", "--out", str(tmp_path / "o")]
            argv += ["--base-url", url, "--cache-dir", str(tmp_path / "cache")]
        code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and "invalid base URL" in err and "***" in err, err
    assert server.base_url.removesuffix("/v1") in err  # the host is still named
    assert server.requests == {}  # refused before any request
    assert_nowhere(URL_SECRET, out, err)


def test_redact_url_masks_credentials_query_and_fragment() -> None:
    from icm_client.redact import redact_url

    assert redact_url("http://h:8000/v1") == "http://h:8000/v1"
    assert redact_url("https://u:pw0rd@h/v1?k=v#f") == "https://h/v1?***#***"
    assert redact_url("http://u:p/ss@h/v1") == "http://h/v1"  # an unencoded / in a password
    assert redact_url("h:99999/x?y") == "h:99999/x?***"  # malformed: masked, never raises
