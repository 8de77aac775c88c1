"""Label a dataset from Python with the async API.

    python examples/label_api.py examples/arithmetic.jsonl examples/arithmetic_task.toml
    python examples/label_api.py claims.jsonl truthfulqa --base-url http://gpu-box:8000/v1

Without ``--base-url`` the embedded model (``pip install 'icm-client[local]'``) is started for
the duration of the run. Gold labels in the file are split off by ``load_dataset`` and used
only to report agreement at the end: ``label()`` accepts examples, never a ``Dataset``.
"""

from __future__ import annotations

import argparse

import anyio

import icm_client as icm


async def main(args: argparse.Namespace) -> None:
    data = icm.load_dataset(args.input)
    task = icm.get_task(args.task)
    config = icm.LabelConfig(
        strategy="bounded", context_size=args.context_size, search=icm.SearchConfig(seed=args.seed)
    )
    # No --base-url: the embedded model, started here and stopped when the block ends. The
    # client has a disk cache, retries and a concurrency limit, and is checked (one request,
    # the label words single tokens) before the block runs.
    async with icm.connect(args.base_url, args.model, task=task) as client:
        result = await icm.label(data.examples, task, client, config)

    result = result.with_gold(data.gold)
    for row in result.rows:
        print(f"{row.id:>12}  {row.label:<6} {row.confidence:.2f}")
    print(result.summary.model_dump_json(indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("task", help="built-in task name or task config file")
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--context-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    anyio.run(main, parser.parse_args())
