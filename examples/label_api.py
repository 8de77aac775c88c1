"""Label a dataset from Python with the async API.

    python examples/label_api.py examples/arithmetic.jsonl examples/arithmetic_task.toml
    python examples/label_api.py claims.jsonl truthfulqa --base-url http://gpu-box:8000/v1

Without ``--base-url`` the embedded model (``pip install 'icm-client[local]'``) is started for
the duration of the run. Gold labels in the file are split off by ``load_dataset`` and used
only to report agreement at the end: ``label()`` accepts examples, never a ``Dataset``.
"""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack

import anyio

from icm_client.backends import OpenAICompletions, stack
from icm_client.dataset import load_dataset
from icm_client.run import LabelConfig, label
from icm_client.search.anneal import SearchConfig
from icm_client.tasks import get_task


async def main(args: argparse.Namespace) -> None:
    data = load_dataset(args.input)
    task = get_task(args.task)
    config = LabelConfig(
        strategy="bounded", context_size=args.context_size, search=SearchConfig(seed=args.seed)
    )
    async with AsyncExitStack() as exits:
        base_url = args.base_url
        if base_url is None:
            from icm_client.local import EmbeddedServer

            base_url = (await exits.enter_async_context(EmbeddedServer())).base_url
        backend = stack(OpenAICompletions(base_url, args.model))  # disk cache + retry + limit
        exits.push_async_callback(backend.aclose)
        result = await label(data.examples, task, backend, config)

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
