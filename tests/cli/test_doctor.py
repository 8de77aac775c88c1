"""``icm doctor`` against scripted servers of each kind (httpx2.MockTransport), the command line
against a real loopback server, and once against the real embedded model."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
import pytest
from fault_server import FaultServer

from icm_client.cli import main
from icm_client.doctor import K_TRIED, DoctorReport, diagnose
from icm_client.errors import ConfigError

KEY = "sk-doctor-SECRET-42"
BOS = "<s>"
LABEL_LPS = {" True": -0.4, " False": -1.3, " maybe": -2.6}
_PIECE_RE = re.compile(r"\s?\S+|\s+")


class FakeServer:
    """An OpenAI-compatible server with the capabilities of the host it plays.

    A word-level tokenizer (each word with its leading space is one token); the next-token
    distribution is the same after every prompt, so the token-id and text forms of a prompt
    agree, as they do on a real server.
    """

    def __init__(
        self,
        *,
        shape: str = "openai",  # or "llamacpp" (content[].top_logprobs)
        max_k: int | None = None,  # larger k: HTTP 400, as vLLM's --max-logprobs
        logprobs: bool = True,
        echo: bool = False,
        explicit: bool = False,  # honours logprob_token_ids
        token_prompts: bool = False,
        tokenize: str | None = None,  # "llamacpp" / "vllm" /tokenize shape
        cached: str | None = None,  # "usage" (cached_tokens) / "timings" (llama.cpp)
        models: list[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.shape, self.max_k, self.logprobs, self.echo = shape, max_k, logprobs, echo
        self.explicit, self.token_prompts, self.tokenize = explicit, token_prompts, tokenize
        self.cached, self.api_key = cached, api_key
        self.models = ["base-7b"] if models is None else models
        self.vocab: dict[str, int] = {BOS: 0}
        self.seen: set[str] = set()
        self.paths: list[str] = []
        filler = {f" w{i}": -3.0 - i / 10 for i in range(150)}
        self.dist = [(self.id(t), t, lp) for t, lp in (LABEL_LPS | filler).items()]
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    def id(self, piece: str) -> int:
        return self.vocab.setdefault(piece, len(self.vocab))

    def piece(self, token: int) -> str:
        return next(p for p, i in self.vocab.items() if i == token)

    def ids(self, text: str) -> list[int]:
        return [self.id(p) for p in _PIECE_RE.findall(text)]

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.paths.append(path)
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            sent = request.headers.get("authorization", "")
            return error(401, f"Incorrect API key provided: {sent.removeprefix('Bearer ')}")
        body: Any = json.loads(request.content) if request.content else None
        if path == "/v1/models" and self.models is not None:
            return httpx2.Response(200, json={"data": [{"id": m} for m in self.models]})
        if path == "/tokenize" and self.tokenize == "llamacpp" and "content" in body:
            ids = ([0] if body.get("add_special") else []) + self.ids(body["content"])
            tokens: list[Any] = ids
            if body.get("with_pieces"):
                tokens = [{"id": i, "piece": self.piece(i)} for i in ids]
            return httpx2.Response(200, json={"tokens": tokens})
        if path == "/tokenize" and self.tokenize == "vllm" and "prompt" in body:
            ids = ([0] if body.get("add_special_tokens", True) else []) + self.ids(body["prompt"])
            out: dict[str, Any] = {"count": len(ids), "max_model_len": 4096, "tokens": ids}
            if body.get("return_token_strs"):
                out["token_strs"] = [self.piece(i).replace(" ", "\u0120") for i in ids]
            return httpx2.Response(200, json=out)
        if path == "/v1/completions":
            return self.complete(body)
        return error(404, f"no route {path}")

    def complete(self, body: dict[str, Any]) -> httpx2.Response:
        if body.get("model") not in self.models:
            return error(404, f"The model `{body.get('model')}` does not exist.")
        prompts = body["prompt"]
        if not isinstance(prompts, list) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if not all(isinstance(p, str) for p in prompts) and not self.token_prompts:
            return error(400, "prompt must be a string")
        k = body.get("logprobs")
        if self.max_k is not None and k is not None and k > self.max_k:
            return error(400, f"Requested logprobs of {k}, which is greater than max allowed")
        texts = [p if isinstance(p, str) else "".join(map(self.piece, p)) for p in prompts]
        choices = [self.choice(i, t, k, body) for i, t in enumerate(texts)]
        n = len(self.ids(texts[0]))
        total = sum(len(self.ids(t)) for t in texts)  # usage of every prompt, as vLLM's
        usage: dict[str, Any] = {"prompt_tokens": total, "completion_tokens": len(choices)}
        out: dict[str, Any] = {"object": "text_completion", "choices": choices, "usage": usage}
        hit = n - 1 if texts[0] in self.seen else 0
        self.seen.update(texts)
        if self.cached == "usage":
            usage["prompt_tokens_details"] = {"cached_tokens": hit}
        elif self.cached == "timings":
            out["timings"] = {"cache_n": hit, "prompt_n": n - hit}
        return httpx2.Response(200, json=out)

    def choice(self, index: int, text: str, k: int | None, body: dict[str, Any]) -> Any:
        if k is None or not self.logprobs:
            return {"index": index, "text": " True", "logprobs": None}
        top = self.dist[:k]
        wanted = body.get("logprob_token_ids") if self.explicit else None
        listed = {i for i, _, _ in top}
        top += [(i, self.piece(i), -20.0) for i in wanted or [] if i not in listed]
        if self.shape == "llamacpp":
            entries = [{"id": i, "token": t, "logprob": lp, "bytes": []} for i, t, lp in top]
            content = [entries[0] | {"top_logprobs": entries}]
            return {"index": index, "text": " True", "logprobs": {"content": content}}
        as_ids = body.get("return_tokens_as_token_ids")
        top_map = {(f"token_id:{i}" if as_ids else t): lp for i, t, lp in top}
        tokens, first = [" True"], [top_map]
        if body.get("echo") and self.echo:  # the prompt's tokens first, as vLLM echoes
            tokens = _PIECE_RE.findall(text) + tokens
            first = [{t: -5.0} for t in tokens[:-1]] + first
        logprobs = {"tokens": tokens, "top_logprobs": first}
        return {"index": index, "text": text + " True" if body.get("echo") else " True"} | {
            "logprobs": logprobs
        }


def error(status: int, message: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"message": message, "type": "invalid"}})


def vllm() -> FakeServer:
    return FakeServer(
        max_k=20, echo=True, explicit=True, token_prompts=True, tokenize="vllm", cached="usage"
    )


def llamacpp() -> FakeServer:
    return FakeServer(shape="llamacpp", token_prompts=True, tokenize="llamacpp", cached="timings")


async def doctor(server: FakeServer, **kw: Any) -> DoctorReport:
    url = kw.pop("url", "http://gpu-box:8000/v1")
    return await diagnose(url, client=server.client, prefix_tokens=300, **kw)


# -- what each kind of server supports ----------------------------------------------------


@pytest.mark.anyio
async def test_a_vllm_like_server() -> None:
    report = await doctor(vllm())
    assert report.ok, report.problems
    assert report.model == "base-7b" and report.models == ["base-7b"]
    assert report.logprobs and report.max_logprobs == 20
    assert report.echo is True
    assert report.logprob_token_ids is True
    assert report.tokenizer == "vllm" and report.token_prompts is True
    for lab in report.labels:
        assert lab.single_token and lab.leading_space
        assert lab.pieces == [lab.label.replace(" ", "\u0120")]
        assert lab.in_top_k and lab.logprob == pytest.approx(LABEL_LPS[lab.label])
    cache = report.prefix_cache
    assert cache is not None and cache.effective is True
    assert cache.cached_tokens == cache.prompt_tokens - 1 > 100  # type: ignore[operator]
    assert report.notes == []
    text = report.text()
    assert "logprob_token_ids  yes" in text and "verdict: can serve ICM" in text
    assert report.prompt_lists is True and "batched prompts" in text


@pytest.mark.anyio
async def test_a_llamacpp_like_server() -> None:
    report = await doctor(llamacpp())
    assert report.ok, report.problems
    assert report.max_logprobs == K_TRIED  # takes the most we try
    assert report.echo is False and report.logprob_token_ids is False
    assert [lab.pieces for lab in report.labels] == [[" True"], [" False"]]
    assert all(lab.single_token and lab.leading_space for lab in report.labels)
    cache = report.prefix_cache
    assert cache is not None and cache.effective is True
    assert cache.cache_n is not None and cache.prompt_n == 1 and cache.cached_tokens is None


@pytest.mark.anyio
async def test_a_hosted_api_with_a_small_k_cap_and_no_tokenizer() -> None:
    report = await doctor(FakeServer(max_k=5, echo=True))
    assert report.ok, report.problems
    assert report.max_logprobs == 5
    assert report.tokenizer == "none" and report.token_prompts is False
    assert all(lab.token_ids is None and lab.single_token is None for lab in report.labels)
    assert any("--top-k 5" in n for n in report.notes)
    cache = report.prefix_cache
    assert cache is not None and cache.cached_tokens is None and cache.effective is None
    assert "tokenization unknown" in report.text()


@pytest.mark.anyio
async def test_a_cache_that_does_not_hit_is_reported() -> None:
    server = vllm()

    class Forgetful(set[str]):
        def update(self, *items: Any) -> None:  # never remembers a prompt
            pass

    server.seen = Forgetful()
    report = await doctor(server)
    assert report.ok
    assert report.prefix_cache is not None and report.prefix_cache.effective is False
    assert any("--enable-prefix-caching" in n for n in report.notes)


# -- why an endpoint cannot serve ICM ----------------------------------------------------


@pytest.mark.anyio
async def test_no_logprobs_is_a_problem() -> None:
    report = await doctor(FakeServer(logprobs=False))
    assert not report.ok
    assert "logprobs" in report.problems[0]
    assert report.logprobs is False
    assert "CANNOT serve ICM" in report.text()


@pytest.mark.anyio
async def test_unreachable_is_a_problem() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(refuse))
    report = await diagnose("http://nowhere:8000", client=client)
    assert not report.ok
    assert report.problems[0].startswith("model list: unreachable")


@pytest.mark.anyio
async def test_a_wrong_key_is_a_problem_and_the_key_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-wrong-key-7")
    report = await doctor(FakeServer(api_key=KEY), api_key_env="MY_KEY")
    assert not report.ok
    assert "not authorised" in report.problems[0] and "$MY_KEY" in report.problems[0]
    assert "sk-wrong-key-7" not in report.model_dump_json() + report.text()


@pytest.mark.anyio
async def test_a_right_key_is_sent() -> None:
    report = await doctor(FakeServer(api_key=KEY), api_key=KEY)
    assert report.ok, report.problems


@pytest.mark.anyio
async def test_an_unknown_model_is_a_problem() -> None:
    report = await doctor(vllm(), model="base-70b")
    assert not report.ok
    assert "not in the server's list" in report.notes[0]
    assert "not found" in report.problems[0] and "base-70b" in report.problems[0]


@pytest.mark.anyio
async def test_a_server_without_models_needs_model() -> None:
    report = await doctor(FakeServer(models=[]))
    assert report.problems == ["the server lists no model: pass --model"]


@pytest.mark.anyio
async def test_multi_token_labels_on_a_text_only_server_are_a_problem() -> None:
    server = FakeServer(tokenize="llamacpp", shape="llamacpp")  # no token-id prompts
    report = await doctor(server, labels=(" Yes indeed", " No"))
    assert not report.ok
    assert report.labels[0].single_token is False and len(report.labels[0].token_ids or []) == 2
    assert "one-token label words" in report.problems[0]


@pytest.mark.anyio
async def test_multi_token_labels_where_token_ids_are_scored_are_a_note() -> None:
    report = await doctor(vllm(), labels=(" True", " Not true"))
    assert report.ok, report.problems
    assert any("2 tokens: scored exactly" in n for n in report.notes)


@pytest.mark.anyio
async def test_a_malformed_url_is_an_input_error() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        await diagnose("ftp://host")


# -- the command line ---------------------------------------------------------------------


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer() as server:
        assert main(["doctor", server.base_url, "--prefix-tokens", "0"]) == 0
        out = capsys.readouterr().out
        assert "verdict: can serve ICM" in out and "stand-in-1" in out
        assert main(["doctor", server.base_url, "--task", "cities", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] and report["labels"][0]["label"] == " True"
    with FaultServer(rate=1.0, kinds=["no_logprobs"], fault_paths=["/v1/completions"]) as bad:
        assert main(["doctor", bad.base_url, "--prefix-tokens", "0"]) == 1
        assert "CANNOT serve ICM" in capsys.readouterr().out
    with FaultServer() as gone:
        dead = gone.base_url
    assert main(["doctor", dead]) == 1
    assert "unreachable" in capsys.readouterr().out


# -- the real embedded model ---------------------------------------------------------------


@pytest.mark.anyio
async def test_doctor_on_the_embedded_server(local_server: str) -> None:
    report = await diagnose(local_server, prefix_tokens=700)
    assert report.ok, report.problems
    assert report.logprobs and report.max_logprobs == K_TRIED
    assert report.echo is False  # llama.cpp ignores echo
    assert report.logprob_token_ids is False
    assert report.tokenizer == "llamacpp" and report.token_prompts is True
    assert [lab.pieces for lab in report.labels] == [[" True"], [" False"]]
    assert all(lab.single_token and lab.leading_space for lab in report.labels)
    assert all(lab.logprob is not None and lab.logprob < 0 for lab in report.labels)
    cache = report.prefix_cache
    assert cache is not None and cache.effective is True and cache.cached_tokens
