"""The benchmarks' quick modes, so that they cannot rot: each script runs as a user runs it
(a subprocess, ``--quick``) and its JSON must hold the expected keys and consistent figures.
Nothing here is timed: speed is what the benchmarks report, not what tests assert. The tests
that run a script are marked ``benchmark``: the default ``python -m pytest -q`` leaves them out
(their time grows with the machine's load) and ``.ci/run`` runs them with ``-m benchmark``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from processes import HANG_S

from icm_client.run import LabelConfig
from icm_client.testing.protocol import hash_logprobs as model_logprobs
from icm_client.testing.protocol import toy_tokenize

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def run_quick(name: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    """Run ``benchmarks/NAME.py --quick``; only tests marked ``benchmark`` call this."""
    out = tmp_path / f"{name}.json"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--out", str(out), *extra],
        check=True,
        capture_output=True,
        timeout=HANG_S,
    )
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["benchmark"] == name and doc["machine"]["cpus"] >= 1
    return doc


@pytest.fixture(scope="module")
def sim() -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _sim
    finally:
        sys.path.remove(str(BENCHMARKS))
    return _sim


def test_the_benchmark_server_copies_the_tests_stand_in_model(sim: Any) -> None:
    for prompt in ("Claim: the sea is salty.\nI think this Claim is", "x", "a, b.\n\nc"):
        assert sim.model_logprobs(prompt) == model_logprobs(prompt)
        assert sim.toy_tokenize(prompt) == toy_tokenize(prompt)
    # The belief variant: True/False lead, by a belief about the target, not its context.
    a = sim.belief_logprobs("ctx one\n\nQuestion: q\nClaim: c.\nI think this Claim is")
    b = sim.belief_logprobs("ctx two\n\nQuestion: q\nClaim: c.\nI think this Claim is")
    assert {a[0][0], a[1][0]} == {" True", " False"} and a[0][0] == b[0][0]


@pytest.mark.benchmark
def test_cost(tmp_path: Path) -> None:
    doc = run_quick("cost", tmp_path)
    runs = {(r["task"], r["n"], r["strategy"]): r for r in doc["runs"]}
    baseline = {(b["task"], b["n"]): b for b in doc["baseline"]}
    assert set(baseline) == {("truthfulqa", 16), ("gsm8k", 8)}
    assert {s for _, _, s in runs} == {
        "exact",
        "bounded C=8",
        "bounded C=16",
        "bounded C=32",
        "exact +calibrate",
        "bounded C=32 +calibrate",
    }
    for (task, n), base in baseline.items():
        exact = runs[(task, n, "exact")]
        # The naive baseline is counted on the exact run's own search: every prediction a
        # call. The memo can only save calls, never add any.
        assert base["calls"] == exact["predictions"] == exact["naive_same_search"]["calls"]
        assert 0 < exact["calls"] <= base["calls"]
        assert 0 < exact["prompt_tokens"] <= base["prompt_tokens"]
        # Below C + 1 examples a bounded context holds every labeled example: same prompts.
        bounded = runs[(task, n, "bounded C=32")]
        assert (bounded["calls"], bounded["prompt_tokens"]) == (
            exact["calls"],
            exact["prompt_tokens"],
        )
        assert base["tokens_per_label"] == base["prompt_tokens"] / n
    for r in doc["runs"]:
        assert r["steps"] >= r["n"] and r["calls"] > 0 and r["tokens_per_label"] > 0
        # Neighbouring leave-one-out prompts share their leading demonstrations.
        assert 0 < r["prefix_cached_tokens"] < r["prompt_tokens"]
    for q in doc["ratios"]:
        r = runs[(q["task"], q["n"], q["strategy"])]
        base = baseline[(q["task"], q["n"])]
        assert q["prompt_tokens"] == pytest.approx(base["prompt_tokens"] / r["prompt_tokens"])
    assert doc["target"]["ratio_min"] == 20


@pytest.mark.benchmark
def test_overhead(tmp_path: Path) -> None:
    doc = run_quick("overhead", tmp_path)
    rows = doc["results"]
    assert {(r["client"], r["concurrency"]) for r in rows} == {
        (client, c)
        for client in (
            "icm stack",
            "icm stack, aiohttp",
            "httpx2 alone",
            "aiohttp alone",
            "minimal asyncio",
        )
        for c in (1, 8, 32)
    }
    for r in rows:
        assert r["requests"] == r["concurrency"] * doc["params"]["rounds"]
        # Nothing beats a server that only waits (allowing for timer granularity).
        assert 0 < r["throughput_over_ideal"] <= 1.05
        assert r["client_cpu_ms_per_request"] > 0
    assert doc["target"]["concurrency"] == 32
    assert isinstance(doc["target"]["throughput_met"], bool)


@pytest.mark.benchmark
def test_requests_per_score(tmp_path: Path) -> None:
    doc = run_quick("requests_per_score", tmp_path)
    configs = doc["configs"]
    assert "tokenize every score" in configs and len(configs) >= 2
    for figures in configs.values():
        assert figures["identical_to_baseline"] is True  # same scores, fewer requests
        assert figures["requests_per_score"] == figures["http_requests"] / doc["n"]
        assert figures["completion_requests"] <= figures["http_requests"]
    # the baseline tokenizes the prompt and each of the two labels for every score
    assert configs["tokenize every score"]["tokenize_requests"] == 3 * doc["n"]
    assert configs["label ids learnt per ending"]["tokenize_requests"] < doc["n"]


@pytest.mark.benchmark
def test_batching(tmp_path: Path) -> None:
    doc = run_quick("batching", tmp_path)
    rows = {r["client"]: r for r in doc["results"]}
    assert set(rows) == {"one prompt per request", "batched", "batched, aiohttp"}
    n = doc["params"]["in_flight"] * doc["params"]["rounds"]
    for r in rows.values():
        assert r["prompts"] == n and r["client_cpu_ms_per_prompt"] > 0
        assert 0 < r["throughput_over_ideal"] <= 1.05
    assert rows["one prompt per request"]["http_requests"] == n
    # batches hold batch_size prompts at most, so at least n / batch_size requests
    for name in ("batched", "batched, aiohttp"):
        assert n / doc["params"]["batch_size"] <= rows[name]["http_requests"] < n


@pytest.mark.benchmark
def test_search_cpu(tmp_path: Path) -> None:
    doc = run_quick("search_cpu", tmp_path)
    rows = {(r["task"], r["n"]): r for r in doc["results"]}
    assert set(rows) == {(t, n) for t in ("truthfulqa", "gsm8k") for n in (64, 256)}
    for (task, n), r in rows.items():
        assert r["steps"] == n and r["ms_per_step"] > 0
        assert r["labeled_by_search"] > 8  # the search grows its labeled set
        assert (r["constraints"] > 0) == (task == "gsm8k")
    assert {q["task"] for q in doc["ratios"]} == {"truthfulqa", "gsm8k"}
    assert (
        set(doc["target"]["met"])
        == set(doc["target"]["cpu_ms_per_step"])
        == {"truthfulqa", "gsm8k"}
    )


@pytest.mark.benchmark
def test_rerun(tmp_path: Path) -> None:
    doc = run_quick("rerun", tmp_path)
    rows = {(r["path"], r["run"]): r for r in doc["results"]}
    first = rows[("API", "first (fresh cache)")]
    again = rows[("API", "re-run")]
    assert first["calls"] > 0 and again["calls"] == 0
    assert again["cache_hits"] == first["calls"]  # every score of the first run, from disk
    cli_first = rows[("CLI", "first (fresh cache)")]
    assert cli_first["calls"] >= first["calls"]  # (+ the CLI's preflight probe)
    assert rows[("CLI", "re-run --restart (cache only)")]["calls"] == 0
    assert rows[("CLI", "re-run, same command (checkpoint)")]["calls"] == 0
    assert doc["target"]["calls"] == 0


def test_the_benchmark_server_serves_at_most_capacity_at_once(sim: Any) -> None:
    def peak(capacity: int | None) -> dict[str, float]:
        with sim.SimServer(latency=0.5, model="canned", capacity=capacity) as server:
            body = json.dumps({"model": sim.MODEL, "prompt": "x", "logprobs": 2}).encode()

            def post(_: int) -> None:
                request = urllib.request.Request(
                    f"{server.base_url}/completions", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=HANG_S) as response:
                    assert json.loads(response.read())["choices"]

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(post, range(6)))
            stats: dict[str, float] = server.stats()
            return stats

    unbounded, bounded = peak(None), peak(2)
    assert unbounded["completions"] == bounded["completions"] == 6
    assert unbounded["in_service_peak"] > 2  # the six requests overlap...
    assert bounded["in_service_peak"] == 2  # ...but only two hold a slot at once
    assert bounded["queued_peak"] >= 1


@pytest.mark.benchmark
def test_replicas(tmp_path: Path) -> None:
    doc = run_quick("replicas", tmp_path)
    p = doc["params"]
    rows = {(r["workload"], r["replicas"]): r for r in doc["results"]}
    assert set(rows) == {(w, n) for w in ("bounded C=8", "exact, 16 labeled") for n in (1, 2)}
    for (_, n), r in rows.items():
        calls = r["calls_per_replica"]
        # Every request answered once (the router's count equals the servers'), and every
        # replica took a share: the workload keeps them all busy.
        assert len(calls) == n and sum(calls) == r["requests"] == p["requests"]
        assert min(calls) > 0
        assert r["ideal_rps"] == pytest.approx(n * p["capacity"] / p["latency_s"])
        assert r["throughput_rps"] == pytest.approx(r["requests"] / r["wall_s"], rel=0.01)
        assert r["achieved_over_ideal"] == pytest.approx(
            r["throughput_rps"] / r["ideal_rps"], rel=0.01
        )
        assert r["efficiency"] == pytest.approx(r["speedup"] / n, abs=0.001)
        assert r["target_met"] == (r["efficiency"] >= doc["target"]["efficiency_min"])
        assert 1 <= r["in_service_peak"] <= p["capacity"]  # the servers' slots held
        assert r["preferred_share"] == pytest.approx(1 - r["spills"] / r["requests"], abs=1e-4)
        assert r["client_cpu_ms_per_request"] > 0
        for wait in (r["client_cpu_wait_share"], r["server_cpu_wait_share"]):
            assert wait is None or wait >= 0  # None: no /proc/PID/schedstat here
    for workload in ("bounded C=8", "exact, 16 labeled"):
        assert rows[(workload, 1)]["speedup"] == 1 and rows[(workload, 1)]["spills"] == 0
    # One affinity key for every exact prompt: one replica is preferred, and the other
    # serves exactly what spilled over to it.
    exact = rows[("exact, 16 labeled", 2)]
    assert exact["affinity_keys"] == 1 and rows[("bounded C=8", 2)]["affinity_keys"] > 1
    assert exact["spills"] in {exact["requests"] - c for c in exact["calls_per_replica"]}
    assert doc["target"]["met"] == (not doc["target"]["missed"])


@pytest.mark.benchmark
def test_scale(tmp_path: Path) -> None:
    doc = run_quick("scale", tmp_path, "--work", str(tmp_path / "work"))
    assert doc["labeled"] == doc["examples"] == 2000
    assert doc["icm_examples"] >= 200 and doc["chunks"] >= 2
    # Killed after some chunks, resumed: what the killed run finished is kept, not redone.
    assert doc["resumed_batches"] == doc["batches"]
    assert doc["resumed_chunks"] == doc["killed_after_chunks"] >= 1
    assert len(doc["calls_per_replica"]) == doc["settings"]["replicas"]
    assert all(c > 0 for c in doc["calls_per_replica"])  # every replica took a share
    assert doc["killed_run_calls"] > 0 and doc["resumed_run_calls"] > 0


@pytest.mark.benchmark
@pytest.mark.integration
def test_quality(tmp_path: Path, shared_data: Path, require_local_model: None) -> None:
    doc = run_quick("quality", tmp_path, "--data", str(shared_data))
    summary = doc["tasks"]["cities"]["summary"]
    assert set(summary) == {"exact", "bounded 8", "bounded 4"}
    assert summary["exact"]["calls_ratio"] == 1 and summary["exact"]["prompt_tokens_ratio"] == 1
    for s in summary.values():
        assert 0 <= s["agreement_min"] <= s["agreement_mean"] <= s["agreement_max"] <= 1
        assert s["calls"] > 0 and s["prompt_tokens"] > 0


@pytest.mark.benchmark
@pytest.mark.integration
def test_local_speed(tmp_path: Path, require_local_model: None) -> None:
    doc = run_quick("local_speed", tmp_path)
    assert doc["settings"]["old"]["engine"] == "prebuilt"
    assert doc["engines"]["old"] == "prebuilt" and doc["engines"]["new"] in ("prebuilt", "native")
    rate = doc["tokens_per_s"]
    assert rate["old"] > 0 and rate["new"] > 0
    assert doc["ratio"] == pytest.approx(rate["new"] / rate["old"])
    scores = doc["scores"]
    assert scores["statements"] == 16 and 0 <= scores["same_side"] <= 16
    assert 0 <= scores["mean_abs_dp"] <= scores["max_abs_dp"] <= 1
    assert 0 <= scores["auroc_old"] <= 1 and 0 <= scores["auroc_new"] <= 1


@pytest.mark.benchmark
def test_quality_sim(tmp_path: Path) -> None:
    doc = run_quick("quality_sim", tmp_path, "--regimes", "oracle", "noisy", "--shapes", "gsm8k")
    rows = {(r["regime"], r["strategy"]): r for r in doc["rows"]}
    assert set(rows) == {(g, s) for g in ("oracle", "noisy") for s in ("exact", "bounded 8")}
    for (regime, strategy), r in rows.items():
        assert r["n"] == 32 and r["converged"] and r["steps"] >= r["n"]
        assert r["agreement"] >= r["ceiling"] - 0.01 and r["worst_gap"] <= 0.01
        assert r["agreement_per_seed"] == [r["agreement"]] and abs(r["u_gap"]) < 1e-6
        assert 1 <= r["chains"] <= LabelConfig().search.chains and r["undecided"] == 0
        assert (r["ceiling"] == 1.0) == (regime == "oracle")
        if strategy != "exact":
            exact = rows[(regime, "exact")]
            assert r["tokens_vs_exact"] == r["tokens_per_label"] / exact["tokens_per_label"] < 1


@pytest.mark.benchmark
def test_pins_sim(tmp_path: Path) -> None:
    doc = run_quick("pins_sim", tmp_path)
    rows = {r["pins"]: r for r in doc["rows"]}
    assert set(rows) == {0, 2} and all(r["regime"] == "in-context-inverted" for r in rows.values())
    assert rows[0]["calls_vs_unpinned"] == 1.0  # the unsupervised run itself
    assert rows[2]["agreement"] > rows[0]["agreement"]  # the pins pulled it towards gold
    assert 0 < rows[2]["calls_vs_unpinned"] < 1  # the re-run took some scores from the cache
    assert rows[2]["seeds_at_gold"] == sum(a >= 0.95 for a in rows[2]["per_seed"])


@pytest.mark.benchmark
@pytest.mark.integration
def test_demo_speed(tmp_path: Path, require_local_model: None) -> None:
    doc = run_quick("demo_speed", tmp_path)
    assert doc["examples"] == 16 and doc["engine"] == "prebuilt"
    assert doc["settings"]["old"]["context_share"] == 1
    assert doc["settings"]["new"]["context_share"] == LabelConfig().context_share > 1
    old, new = doc["runs"]
    assert (old["setting"], new["setting"]) == ("old", "new")
    for run in (old, new):
        assert run["calls"] > 0 and 0 <= run["server_cached"] <= run["prompt_tokens"]
        assert run["sent_tokens_per_s"] >= run["computed_tokens_per_s"] > 0
        assert sum(run["labels"].values()) == 16 and 0 <= run["agreement"] <= 1
    assert doc["wall_ratio_new_old"] == [round(new["wall_s"] / old["wall_s"], 3)]
