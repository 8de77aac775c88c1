"""Routing over replicas, against scripted servers (httpx2.MockTransport): prefix affinity,
spill-over, failover, cool-down, all-down, and the checks on what may be routed together;
then ``icm label`` with several ``--base-url`` (loopback servers) and two real model servers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx2
import pytest
from fault_server import FaultServer

from icm_client.backends import OpenAICompletions, ScoreRequest, Usage
from icm_client.backends.routing import Routing, prefix_affinity
from icm_client.cli import main
from icm_client.client import Retry, ScoringClient
from icm_client.dataset import load_dataset
from icm_client.errors import (
    ConfigError,
    PermanentBackendError,
    TaskError,
    TransientBackendError,
)
from icm_client.local import EmbeddedServer
from icm_client.run import LabelConfig, label
from icm_client.tasks import get_task

LABELS = (" True", " False")
HOSTS = ("a", "b", "c")

Behaviour = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


def ok_body(true_lp: float = -0.2) -> dict[str, object]:
    top = {" True": true_lp, " False": -1.8, " maybe": -3.0}
    return {
        "object": "text_completion",
        "choices": [{"index": 0, "text": " True", "logprobs": {"top_logprobs": [top]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1},
    }


async def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json=ok_body())


async def busy(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(503, json={"error": {"message": "overloaded"}})


async def refused(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


class Cluster:
    """Scripted servers by host name; records which host got each completion request."""

    def __init__(self, hosts: tuple[str, ...] = HOSTS) -> None:
        self.behaviour: dict[str, Behaviour] = {h: ok for h in hosts}
        self.hits: list[str] = []
        self.tokenized: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        if request.url.path.endswith("/v1/models"):
            return httpx2.Response(200, json={"data": [{"id": f"model-{host}"}]})
        if request.url.path == "/tokenize":  # llama.cpp's shape; one token a word
            if self.behaviour[host] is refused:
                return await refused(request)
            words = json.loads(request.content)["content"].split(" ")
            self.tokenized.append(host)
            return httpx2.Response(200, json={"tokens": list(range(len(words) - 1))})
        self.hits.append(host)
        self.in_flight[host] += 1
        self.peak[host] = max(self.peak[host], self.in_flight[host])
        try:
            return await self.behaviour[host](request)
        finally:
            self.in_flight[host] -= 1

    def routing(
        self, hosts: tuple[str, ...] = HOSTS, model: str | None = "m", **kwargs: object
    ) -> Routing:
        usage = Usage()
        backends = [
            OpenAICompletions(f"http://{h}:8000/v1", model, client=self.client, usage=usage)
            for h in hosts
        ]
        return Routing(backends, **kwargs)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def url(host: str) -> str:
    return f"http://{host}:8000/v1/completions"


def request(prefix: str, tail: str = "I think this Claim is") -> ScoreRequest:
    return ScoreRequest(f"{prefix}\n\n{tail}", LABELS)


def prompts_preferring(routing: Routing, host: str, n: int = 1) -> list[ScoreRequest]:
    found = []
    for i in range(1000):
        req = request(f"Claim number {i}: the sky is blue.")
        if routing.ranking(req)[0] == url(host):
            found.append(req)
            if len(found) == n:
                return found
    raise AssertionError(f"no prompt prefers {host}")


# -- affinity ---------------------------------------------------------------------------


def test_ranking_is_deterministic_and_independent_of_endpoint_order() -> None:
    cluster = Cluster()
    one, other = cluster.routing(), cluster.routing(hosts=("c", "a", "b"))
    reqs = [request(f"Claim {i}: water is wet.") for i in range(90)]
    assert [one.ranking(r) for r in reqs] == [other.ranking(r) for r in reqs]
    firsts = Counter(one.ranking(r)[0] for r in reqs)
    assert set(firsts) == {url(h) for h in HOSTS}
    assert min(firsts.values()) >= 15  # rendezvous hashing spreads distinct prefixes


def test_removing_an_endpoint_moves_only_its_keys() -> None:
    cluster = Cluster()
    three, two = cluster.routing(), cluster.routing(hosts=("a", "b"))
    for i in range(60):
        req = request(f"Claim {i}: fire is hot.")
        first = three.ranking(req)[0]
        if first != url("c"):
            assert two.ranking(req)[0] == first


@pytest.mark.anyio
async def test_prompts_sharing_a_prefix_go_to_one_replica() -> None:
    cluster = Cluster()
    routing = cluster.routing(affinity_chars=64)
    shared = "Claim: Paris is in France. I think this Claim is True\n\n" * 3
    for i in range(12):
        await routing.score(request(shared, f"Claim: city {i} is somewhere. I think this is"))
    assert len(set(cluster.hits)) == 1
    assert cluster.hits[0] == routing.ranking(request(shared))[0].split("//")[1].split(":")[0]
    assert sum(s.calls for s in routing.stats()) == 12


@pytest.mark.anyio
async def test_a_caller_given_affinity_key_decides() -> None:
    cluster = Cluster()
    routing = cluster.routing(affinity=lambda r: "same key for all")
    for i in range(9):
        await routing.score(request(f"Claim {i}: completely different prompts."))
    assert len(set(cluster.hits)) == 1


def test_affinity_chars_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="affinity_chars"):
        prefix_affinity(0)


# -- load: spill-over and waiting ----------------------------------------------------------


@pytest.mark.anyio
async def test_spills_over_when_the_preferred_replica_is_saturated() -> None:
    cluster = Cluster(("a", "b"))
    gate = anyio.Event()

    async def slow(req: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return httpx2.Response(200, json=ok_body())

    cluster.behaviour["a"] = slow
    routing = cluster.routing(hosts=("a", "b"), max_concurrency=1)
    first, second = prompts_preferring(routing, "a", 2)
    with anyio.fail_after(5):  # a regression must fail, not hang
        async with anyio.create_task_group() as tg:
            tg.start_soon(routing.score, first)
            while cluster.in_flight["a"] == 0:
                await anyio.sleep(0)
            result = await routing.score(second)  # a is busy: b answers at once
            assert cluster.hits == ["a", "b"]
            gate.set()
    assert result.logprobs[0] == pytest.approx(-0.2)
    stats = {s.name: s for s in routing.stats()}
    assert stats[url("b")].spills == 1 and stats[url("b")].calls == 1
    assert stats[url("a")].calls == 1 and stats[url("a")].spills == 0
    assert routing.usage.extra["routing_spills"] == 1


@pytest.mark.anyio
async def test_waits_for_a_slot_when_every_replica_is_saturated() -> None:
    cluster = Cluster(("a", "b"))
    gate = anyio.Event()

    async def slow(req: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return httpx2.Response(200, json=ok_body())

    cluster.behaviour = {"a": slow, "b": slow}
    routing = cluster.routing(hosts=("a", "b"), max_concurrency=2)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(7):
                tg.start_soon(routing.score, request(f"Claim {i}: grass is green."))
            while sum(cluster.in_flight.values()) < 4:
                await anyio.sleep(0)
            for _ in range(20):
                await anyio.sleep(0)
            assert len(cluster.hits) == 4  # the other 3 wait for a slot
            gate.set()
    assert len(cluster.hits) == 7
    assert cluster.peak["a"] <= 2 and cluster.peak["b"] <= 2
    assert all(s.in_flight == 0 for s in routing.stats())


def preferring(routing: Routing, host: str, stem: str) -> ScoreRequest:
    return next(
        req
        for i in range(1000)
        if routing.ranking(req := request(f"{stem} {i}: the sky is blue."))[0] == url(host)
    )


class Gated:
    """A handler for every host that logs (host, first word of the prompt) as each request
    arrives, and holds the requests named in ``gates`` until their gate opens."""

    def __init__(self, gates: dict[tuple[str, str], anyio.Event]) -> None:
        self.gates = gates
        self.arrived: list[tuple[str, str]] = []

    async def __call__(self, req: httpx2.Request) -> httpx2.Response:
        word = json.loads(req.content)["prompt"].split()[0].rstrip(":")
        self.arrived.append((req.url.host, word))
        gate = self.gates.get((req.url.host, word))
        if gate is not None:
            await gate.wait()
        return httpx2.Response(200, json=ok_body())


async def settle() -> None:
    for _ in range(5):
        await anyio.sleep(0)


@pytest.mark.anyio
async def test_a_freed_slot_goes_to_a_waiting_request_that_prefers_it() -> None:
    cluster = Cluster(("a", "b"))
    fill_a, fill_b, second = anyio.Event(), anyio.Event(), anyio.Event()
    held = Gated({("a", "Fill"): fill_a, ("b", "Fill"): fill_b, ("b", "Second"): second})
    started = held.arrived
    cluster.behaviour = {"a": held, "b": held}
    routing = cluster.routing(hosts=("a", "b"), max_concurrency=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(routing.score, preferring(routing, "a", "Fill"))
            tg.start_soon(routing.score, preferring(routing, "b", "Fill"))
            while sum(cluster.in_flight.values()) < 2:
                await anyio.sleep(0)
            tg.start_soon(routing.score, preferring(routing, "a", "First"))  # waits first
            await settle()
            tg.start_soon(routing.score, preferring(routing, "b", "Second"))
            await settle()
            fill_b.set()  # b frees up: "Second" prefers b and takes it, not "First"
            while ("b", "Second") not in started:
                await anyio.sleep(0)
            assert [w for _, w in started].count("First") == 0  # still waiting for a
            fill_a.set()  # a frees up: "First" takes its own replica
            while ("a", "First") not in started:
                await anyio.sleep(0)
            second.set()
    assert sum(s.spills for s in routing.stats()) == 0


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    cluster = Cluster(("a",))
    gate = anyio.Event()
    held = Gated({("a", "Fill"): gate})
    cluster.behaviour = {"a": held}
    routing = cluster.routing(hosts=("a",), max_concurrency=1)
    quitter = anyio.CancelScope()

    async def gives_up() -> None:
        with quitter:
            await routing.score(request("Quitter: the sky is blue."))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(routing.score, request("Fill: the sky is blue."))
            while not held.arrived:
                await anyio.sleep(0)
            tg.start_soon(gives_up)  # first in line...
            await settle()
            tg.start_soon(routing.score, request("Patient: the sky is blue."))
            await settle()
            quitter.cancel()  # ...but cancelled while it waits
            await settle()
            gate.set()  # the slot goes to the next in line, not to the one that left
    assert [word for _, word in held.arrived] == ["Fill", "Patient"]
    assert routing.stats()[0].in_flight == 0


@pytest.mark.anyio
async def test_a_waiting_request_spills_onto_a_slot_nobody_waiting_prefers() -> None:
    cluster = Cluster(("a", "b"))
    gates = {"a": anyio.Event(), "b": anyio.Event()}
    held = Gated({("a", "Fill"): gates["a"], ("b", "Fill"): gates["b"]})
    cluster.behaviour = {"a": held, "b": held}
    routing = cluster.routing(hosts=("a", "b"), max_concurrency=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(routing.score, preferring(routing, "a", "Fill"))
            tg.start_soon(routing.score, preferring(routing, "b", "Fill"))
            while sum(cluster.in_flight.values()) < 2:
                await anyio.sleep(0)
            tg.start_soon(routing.score, preferring(routing, "a", "First"))
            await settle()
            gates["b"].set()  # nobody waiting prefers b: "First" takes it (no idle slot)
            while ("b", "First") not in held.arrived:
                await anyio.sleep(0)
            gates["a"].set()
    assert sum(s.spills for s in routing.stats()) == 1


@pytest.mark.anyio
async def test_a_client_over_routing_lets_every_replica_fill_by_default() -> None:
    cluster = Cluster(("a", "b", "c"))
    gate = anyio.Event()

    async def slow(req: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return httpx2.Response(200, json=ok_body())

    cluster.behaviour = {"a": slow, "b": slow, "c": slow}
    routing = cluster.routing(hosts=("a", "b", "c"), max_concurrency=(4, 4, 5))
    assert routing.capacity == 13
    backend = ScoringClient(routing, cache=False)  # no max_concurrency: the routing's capacity
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(backend.score, request(f"Claim {i}: grass is green."))
            while sum(cluster.in_flight.values()) < 13:
                await anyio.sleep(0)
            for _ in range(20):
                await anyio.sleep(0)
            assert sum(cluster.in_flight.values()) == 13  # not the plain default of 8
            gate.set()
    assert len(cluster.hits) == 20


# -- health ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("failure", [busy, refused], ids=["503", "connection-refused"])
async def test_fails_over_and_rests_a_failing_replica(failure: Behaviour) -> None:
    cluster, clock = Cluster(("a", "b")), Clock()
    cluster.behaviour["a"] = failure
    routing = cluster.routing(hosts=("a", "b"), cooldown=10.0, clock=clock)
    first, second = prompts_preferring(routing, "a", 2)

    assert (await routing.score(first)).logprobs[0] == pytest.approx(-0.2)
    assert cluster.hits == ["a", "b"]
    stats = {s.name: s for s in routing.stats()}
    assert stats[url("a")].failures == 1 and not stats[url("a")].healthy
    assert stats[url("b")].failovers == 1

    clock.now += 9.0  # still cooling down: a is not asked
    await routing.score(second)
    assert cluster.hits == ["a", "b", "b"]

    clock.now += 2.0  # cooled down and recovered: its keys come back to it
    cluster.behaviour["a"] = ok
    await routing.score(second)
    assert cluster.hits == ["a", "b", "b", "a"]
    assert routing.usage.extra["endpoint0_failures"] == 1
    assert routing.usage.extra["endpoint0_calls"] == 1
    assert routing.usage.extra["endpoint1_calls"] == 2
    # the shared Usage counts each call once, the failed one on a included (it reached a)
    assert routing.usage.calls == 4


@pytest.mark.anyio
async def test_repeated_failures_lengthen_the_rest_and_retry_after_is_honoured() -> None:
    cluster, clock = Cluster(("a", "b")), Clock()

    async def limited(req: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, headers={"retry-after": "45"}, json={"error": "slow down"})

    cluster.behaviour["a"] = busy
    routing = cluster.routing(hosts=("a", "b"), cooldown=10.0, clock=clock)
    (req,) = prompts_preferring(routing, "a")

    await routing.score(req)
    clock.now += 10.5
    await routing.score(req)  # a fails again: now it rests 20 s
    assert cluster.hits == ["a", "b", "a", "b"]
    clock.now += 19.0
    await routing.score(req)
    assert cluster.hits[-1] == "b"
    clock.now += 1.5
    cluster.behaviour["a"] = limited
    await routing.score(req)  # a 429 with Retry-After: 45 s rest
    clock.now += 44.0
    await routing.score(req)
    assert cluster.hits[-1] == "b" and cluster.hits.count("a") == 3


@pytest.mark.anyio
async def test_all_down_raises_a_transient_error_with_the_wait() -> None:
    cluster, clock = Cluster(("a", "b")), Clock()
    cluster.behaviour = {"a": busy, "b": refused}
    routing = cluster.routing(hosts=("a", "b"), cooldown=10.0, clock=clock)

    with pytest.raises(TransientBackendError) as info:
        await routing.score(request("Claim: ice is cold."))
    assert info.value.retry_after == pytest.approx(10.0)
    message = str(info.value)
    assert "all 2 endpoints are unavailable" in message
    assert url("a") in message and url("b") in message and "overloaded" in message
    assert sorted(cluster.hits) == ["a", "b"]

    clock.now += 4.0  # both resting: fails at once, without a request
    with pytest.raises(TransientBackendError) as again:
        await routing.score(request("Claim: ice is cold."))
    assert again.value.retry_after == pytest.approx(6.0)
    assert len(cluster.hits) == 2


@pytest.mark.anyio
async def test_retrying_outside_waits_out_the_cool_down() -> None:
    cluster, clock = Cluster(("a", "b")), Clock()
    cluster.behaviour = {"a": busy, "b": busy}
    routing = cluster.routing(hosts=("a", "b"), cooldown=5.0, clock=clock)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        cluster.behaviour["b"] = ok  # b recovers while we wait

    result = await ScoringClient(routing, cache=False, retry=Retry(sleep=sleep)).score(
        request("Claim: snow is white.")
    )
    assert result.logprobs[0] == pytest.approx(-0.2)
    assert waits and waits[0] >= 5.0
    assert cluster.hits[-1] == "b"
    assert routing.usage.retries == 1


@pytest.mark.anyio
async def test_permanent_errors_are_not_failed_over() -> None:
    cluster = Cluster(("a", "b"))

    async def bad_request(req: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, json={"error": {"message": "logprobs must be <= 5"}})

    cluster.behaviour = {"a": bad_request, "b": bad_request}
    routing = cluster.routing(hosts=("a", "b"))
    with pytest.raises(PermanentBackendError, match="logprobs must be"):
        await routing.score(request("Claim: the moon is cheese."))
    assert len(cluster.hits) == 1
    assert all(s.healthy and s.failures == 0 for s in routing.stats())


@pytest.mark.anyio
async def test_tokenize_fails_over_and_preflight_checks_labels_through_routing() -> None:
    cluster, clock = Cluster(("a", "b")), Clock()
    cluster.behaviour["a"] = refused
    routing = cluster.routing(hosts=("a", "b"), clock=clock)
    assert await routing.tokenize(" True") == [0]
    assert cluster.tokenized == ["b"]
    assert [s.healthy for s in routing.stats()] == [False, True]
    assert routing.multi_token_labels is False  # text scoring: one token per label
    backend = ScoringClient(routing, cache=False)
    with pytest.raises(TaskError, match="' Not true' is 2 tokens"):
        await backend.preflight(ScoreRequest("Claim: ice is cold. It is", (" True", " Not true")))


# -- set-up ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_replicas_must_serve_one_model() -> None:
    cluster = Cluster(("a", "b"))
    routing = cluster.routing(hosts=("a", "b"), model=None)  # each asks /v1/models
    with pytest.raises(ConfigError, match="not replicas of one model"):
        await routing.prepare()


@pytest.mark.anyio
async def test_prepare_tolerates_a_replica_that_is_down() -> None:
    cluster, clock = Cluster(("a", "b")), Clock()
    cluster.behaviour["a"] = busy
    original = cluster.handle

    async def handle(req: httpx2.Request) -> httpx2.Response:
        if req.url.host == "a":  # /v1/models too
            return httpx2.Response(502)
        return await original(req)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    usage = Usage()
    routing = Routing(
        [
            OpenAICompletions("http://a:8000", None, client=client, usage=usage),
            OpenAICompletions("http://b:8000", "model-b", client=client, usage=usage),
        ],
        clock=clock,
    )
    await routing.prepare()
    assert routing.identity == "openai-completions:model-b:top20"
    assert [s.healthy for s in routing.stats()] == [False, True]


def test_routed_backends_must_share_usage_and_have_distinct_names() -> None:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))
    a = OpenAICompletions("http://a:8000", "m", client=client)
    b = OpenAICompletions("http://b:8000", "m", client=client)
    with pytest.raises(ConfigError, match="share one Usage"):
        Routing([a, b])
    u = Usage()
    same = [OpenAICompletions("http://a:8000/v1", "m", client=client, usage=u) for _ in "xy"]
    with pytest.raises(ConfigError, match="unique"):
        Routing(same)
    with pytest.raises(ConfigError, match="max_concurrency"):
        Routing(same, names=["x", "y"], max_concurrency=[1])
    with pytest.raises(ConfigError, match="at least one"):
        Routing([])


@pytest.mark.anyio
async def test_from_urls_in_a_client() -> None:
    cluster = Cluster(("a", "b"))
    routing = Routing.from_urls(
        ["http://a:8000/v1", "http://b:8000"], "m", client=cluster.client, max_concurrency=4
    )
    backend = ScoringClient(routing, cache=False, max_concurrency=8)
    reqs = [request(f"Claim {i}: rocks are hard.") for i in range(20)]
    async with anyio.create_task_group() as tg:
        for r in reqs:
            tg.start_soon(backend.score, r)
    assert backend.identity == "openai-completions:m:top20"
    assert backend.usage.calls == 20
    assert set(cluster.hits) == {"a", "b"}
    await backend.aclose()


# -- the command line: several --base-url ------------------------------------------------


def write_claims(path: Path, n: int = 8) -> None:
    rows = [
        {"id": f"c{i}", "question": f"What is item {i // 2}?", "choice": f"It is thing {i}."}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def label_args(tmp_path: Path, urls: list[str]) -> list[str]:
    data, out = tmp_path / "claims.jsonl", tmp_path / "labels.jsonl"
    write_claims(data)
    args = ["label", str(data), "--task", "truthfulqa", "--out", str(out), "--quiet"]
    args += ["--no-cache", "--model", "stand-in-1", "--concurrency", "1"]
    for u in urls:
        args += ["--base-url", u]
    return args


def test_cli_labels_through_several_replicas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as a, FaultServer() as b:
        assert main(label_args(tmp_path, [a.base_url, b.base_url])) == 0
        done = a.answered["/v1/completions"], b.answered["/v1/completions"]
    assert min(done) > 0  # both replicas did work
    summary = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    # every prompt that reached either replica is a call: the probes and the preflight too
    assert summary["calls"] == a.prompts_received + b.prompts_received > sum(done) - 1
    counters = summary["backend_counters"]
    assert counters["endpoint0_calls"] > 0 and counters["endpoint1_calls"] > 0
    assert "labeled 8 of 8 examples" in capsys.readouterr().out


# Behind the benchmark marker: a full CLI run; failover: test_fails_over_and_rests_a_failing_replica
@pytest.mark.benchmark
def test_cli_fails_over_when_a_replica_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as gone:
        dead = gone.base_url  # nothing listens there once it has stopped
    with FaultServer() as alive:
        assert main(label_args(tmp_path, [dead, alive.base_url])) == 0
        assert alive.answered["/v1/completions"] > 0
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 8


# -- two real llama.cpp servers ------------------------------------------------------------


# Behind the benchmark marker: two real model servers (minutes on CPU)
@pytest.mark.benchmark
@pytest.mark.anyio
@pytest.mark.usefixtures("require_local_model")
async def test_labels_through_two_real_servers() -> None:
    sample = Path(__file__).parents[2] / "icm_client" / "samples" / "cities_sample.jsonl"
    dataset = load_dataset(sample, limit=8)
    async with (
        EmbeddedServer(n_parallel=1, threads=1, ctx_per_slot=2048) as one,
        EmbeddedServer(n_parallel=1, threads=1, ctx_per_slot=2048) as two,
    ):
        urls = [one.base_url, two.base_url]
        routing = Routing.from_urls(urls, one.model_name, max_concurrency=1)
        backend = ScoringClient(routing, cache=False, max_concurrency=4)
        try:
            config = LabelConfig(strategy="bounded", context_size=3)
            result = await label(dataset.examples, get_task("cities"), backend, config)
        finally:
            await backend.aclose()
    stats = routing.stats()
    assert all(s.calls > 0 and s.failures == 0 for s in stats)  # both replicas worked
    assert sum(s.calls for s in stats) == result.summary.calls > 0
    assert len(result.rows) == 8
