"""Label a dataset from Python with the async API.

    python examples/label_api.py examples/arithmetic.jsonl examples/arithmetic_task.toml
    python examples/label_api.py sample:cities cities --steps 24 --max-calls 200
    python examples/label_api.py claims.jsonl truthfulqa --base-url http://gpu-box:8000/v1

Without ``--base-url`` the embedded model (``pip install 'icm-client[local]'``) is started for
the duration of the run. Gold labels in the file are split off by ``load_dataset`` and used
only to report agreement at the end: ``label()`` accepts examples, never a ``Dataset``. A
run stopped by ``--max-calls`` keeps its best state; the examples it never reached have no
label (``None``).
"""

from __future__ import annotations

import argparse

import anyio

import icm_client as icm


async def main(args: argparse.Namespace) -> None:
    data = icm.load_dataset(args.input)
    task = icm.get_task(args.task)
    search = icm.SearchConfig(seed=args.seed, steps=args.steps)
    config = icm.LabelConfig(strategy="bounded", context_size=args.context_size, search=search)
    budget = icm.Budget(max_calls=args.max_calls) if args.max_calls else None
    # No --base-url: the embedded model, started here and stopped when the block ends. The
    # client has a disk cache, retries and a concurrency limit, and is checked (one request,
    # the label words single tokens) before the block runs.
    async with icm.connect(args.base_url, args.model, task=task, budget=budget) as client:
        progress = icm.Progress(data.examples, task, config, client)  # the plan, then a bar
        result = await icm.label(data.examples, task, client, config, on_step=progress)
        progress.close()

    result = result.with_gold(data.gold)
    for row in result.rows:
        if row.label is None:  # a budget-stopped run never reached it
            print(f"{row.id:>12}  (none)")
        else:
            print(f"{row.id:>12}  {row.label:<6} {row.confidence or 0:.2f}")
    print(result.summary.model_dump_json(indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("task", help="built-in task name or task config file")
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--context-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="a fixed number of steps (default: converge)")
    parser.add_argument("--max-calls", type=int, help="a budget of model calls")
    anyio.run(main, parser.parse_args())
