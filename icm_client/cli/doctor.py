"""``icm doctor [URL]``: what an endpoint supports for ICM; exit 1 when it cannot serve it."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends.config import BackendConfig
from ..doctor import DoctorReport, diagnose
from ..tasks import get_task

_FIELDS = BackendConfig.model_fields


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check what an endpoint supports for ICM (exit 1 if it cannot serve it)",
        description="Probe an OpenAI-compatible endpoint: logprobs and the largest k, echo, "
        "logprob_token_ids, how the label words tokenize, latency, prefix caching. Without "
        "URL, the embedded local model is started and checked.",
    )
    p.set_defaults(run=run)
    p.add_argument("url", nargs="?", help="server base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--model", help=_FIELDS["model"].description)
    p.add_argument("--task", help="check this task's label words (default ' True'/' False')")
    p.add_argument(
        "--api-key-env",
        default=_FIELDS["api_key_env"].default,
        help=_FIELDS["api_key_env"].description,
    )
    p.add_argument(
        "--prefix-tokens",
        type=int,
        default=1500,
        help="size of the prefix-cache probe prompt in tokens (0: skip it)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


async def run(args: argparse.Namespace) -> int:
    labels = get_task(args.task).labels if args.task else (" True", " False")
    options: dict[str, Any] = {
        "labels": labels,
        "api_key_env": args.api_key_env,
        "prefix_tokens": args.prefix_tokens,
    }
    report: DoctorReport
    if args.url is None:
        from ..local import EmbeddedServer

        async with EmbeddedServer() as server:
            report = await diagnose(server.base_url, model=server.model_name, **options)
    else:
        report = await diagnose(args.url, model=args.model, **options)
    print(report.model_dump_json(indent=2) if args.json else report.text())
    return 0 if report.ok else 1
