"""The city demo's labeling on the embedded model: old and new settings in one run.

    python benchmarks/demo_speed.py [--engine prebuilt] [--rounds 1] [--limit 40]
                                    [--old KEY=VALUE ...] [--new KEY=VALUE ...]
                                    [--old-server KEY=VALUE ...] [--new-server KEY=VALUE ...]

Runs the README's city command (``sample:cities``, 40 statements, ``bounded`` with 8
demonstrations, calibrated, the paper's loop of N = ``--limit`` steps) through the Python
API, once per setting per round, alternating which goes first. Each run gets a fresh
embedded server and no score cache, so neither can reuse the other's prefixes or scores.
"old" is ``context_share=1`` (every target its own demonstrations: the strategy before
shared contexts), "new" is ``LabelConfig()``'s default. ``--old``/``--new KEY=VALUE``
override any ``LabelConfig`` field (``--new context_share=4``), ``--old-server``/
``--new-server KEY=VALUE`` any ``EmbeddedServer`` keyword (``--old-server n_parallel=2``).

Printed per run: labeling wall time, calls, prompt tokens sent and the share the server
served from its prefix cache, prompt tokens per second (sent, and computed by the server),
and agreement with the sample's gold labels (near chance for this 270M model, whatever the
setting: see the README). The machine's load moves the times, and so does the search's
path (llama.cpp's scores move with what it has cached, and the search follows them): read
the ratio of a round, and calls per second.

``--engine prebuilt`` is what a fresh clone runs; ``native`` needs
``python -m icm_client.local.native`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from _sim import key_values, machine, table

import icm_client as icm
from icm_client.dataset import load_dataset
from icm_client.local import EmbeddedServer
from icm_client.run import LabelConfig
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

RESULTS = Path(__file__).parent / "results"
COLUMNS = ["round", "setting", "context_share", "n_parallel", "wall_s", "calls"]
COLUMNS += ["prompt_tokens", "server_cached", "sent_tokens_per_s", "computed_tokens_per_s"]
COLUMNS += ["agreement"]
DEMO: dict[str, Any] = {"strategy": "bounded", "context_size": 8, "calibrate": True}


def config(overrides: list[str], base: dict[str, Any], steps: int) -> LabelConfig:
    return LabelConfig(**key_values(base, overrides), search=SearchConfig(steps=steps))


async def one_run(
    engine: str, name: str, cfg: LabelConfig, limit: int, server_kw: dict[str, Any]
) -> dict[str, Any]:
    sample = resources.files("icm_client.samples") / "cities_sample.jsonl"
    with resources.as_file(sample) as path:
        dataset = load_dataset(path, limit=limit)
    task = get_task("cities")
    async with (
        EmbeddedServer(engine=engine, **server_kw) as server,
        icm.connect(
            server.base_url, server.model_name, provider="llamacpp", task=task, cache=False
        ) as client,
    ):
        start = time.perf_counter()
        result = await icm.label(dataset.examples, task, client, cfg)
        wall = time.perf_counter() - start
    s = result.with_gold(dataset.gold).summary
    computed = s.prompt_tokens - s.cached_tokens
    return {
        "setting": name,
        "context_share": cfg.context_share,
        "n_parallel": server.n_parallel,
        "wall_s": round(wall, 1),
        "calls": s.calls,
        "prompt_tokens": s.prompt_tokens,
        "server_cached": s.cached_tokens,
        "sent_tokens_per_s": round(s.prompt_tokens / wall),
        "computed_tokens_per_s": round(computed / wall),
        "agreement": s.gold_agreement,
        "labels": s.label_counts,
        "load_1m": round(os.getloadavg()[0], 2),
    }


async def main(args: argparse.Namespace) -> None:
    old = config(args.old, {**DEMO, "context_share": 1}, args.limit)
    settings = {"old": old, "new": config(args.new, DEMO, args.limit)}
    doc: dict[str, Any] = {"benchmark": "demo_speed", "machine": machine(), "engine": args.engine}
    doc["examples"] = args.limit
    doc["settings"] = {k: v.model_dump() for k, v in settings.items()}
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
        pair = {}
        for name in order:
            server_kw = key_values({}, args.old_server if name == "old" else args.new_server)
            pair[name] = row = await one_run(
                args.engine, name, settings[name], args.limit, server_kw
            )
            row["round"] = round_
            runs.append(row)
            print(json.dumps(row), flush=True)
        ratio = pair["new"]["wall_s"] / pair["old"]["wall_s"]
        doc.setdefault("wall_ratio_new_old", []).append(round(ratio, 3))
        print(f"round {round_}: new/old wall time {ratio:.2f}")
    doc["runs"] = runs
    headers = ["round", "setting", "share", "slots", "wall s", "calls", "tokens", "cached"]
    headers += ["tok/s sent", "tok/s computed", "agreement"]
    print(
        table(
            headers,
            [[r[k] for k in COLUMNS] for r in runs],
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="prebuilt", choices=["prebuilt", "native", "auto"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--old", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--new", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--old-server", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--new-server", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo_speed.json")
    parser.add_argument("--quick", action="store_true", help="16 statements, 16 steps (CI)")
    args = parser.parse_args()
    if args.quick:
        args.limit = 16
    anyio.run(main, args)
