"""``icm scale``: a dataset larger than one context, ICM on a seed set, propagation to the rest."""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from ..backends.config import BackendConfig
from ..errors import ConfigError
from ..injection import SeparatorWarning
from ..run import LabelConfig
from ..runs.outputs import remove_stale_temps
from ..runs.rundir import SCALE_HEAD, RunDir
from ..scale import Plan, ScaleConfig, ScaleResult, label_large
from ..scale.pipeline import Phase
from ..scoring.manyshot import estimate_tokens
from ..search.config import SearchConfig
from ._io import option_error, write_labels_then_summary
from ._sizes import known_window
from .backend_options import (
    add_backend_arguments,
    backend_config,
    open_backend,
    preflight_backend,
)
from .inputs import add_input_arguments, load_input, output_paths
from .strategy import add_strategy_arguments, strategy_settings


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "scale",
        help="label a large dataset: ICM in batches on a seed set, many-shot propagation after",
    )
    p.set_defaults(run=run)
    add_input_arguments(p)
    add_backend_arguments(p)

    defaults = ScaleConfig()  # written once there
    s = p.add_argument_group("batches and propagation")
    s.add_argument(
        "--context-window",
        type=int,
        help="the model's context in tokens; sizes the ICM batches and the propagation "
        f"prompts (default: as the server reports it, vLLM's max_model_len or llama.cpp's "
        f"per-slot n_ctx, else {FALLBACK_WINDOW})",
    )
    s.add_argument("--batch-tokens", type=int, help="tokens per ICM batch (default: from above)")
    s.add_argument("--max-demo-tokens", type=int, help="propagation demonstrations (same)")
    s.add_argument(
        "--seed-examples",
        type=int,
        help="label this many examples (whole groups, at random) by ICM and propagate to the "
        "rest (default: ICM on everything)",
    )
    s.add_argument(
        "--chunk-size", type=int, default=defaults.chunk_size, help="examples per propagation chunk"
    )
    s.add_argument(
        "--iterative",
        action="store_true",
        help="chunk j+1 also takes demonstrations from the chunks up to j",
    )
    s.add_argument(
        "--parallel-batches",
        type=int,
        default=defaults.parallel_batches,
        help="ICM searches at once",
    )
    add_strategy_arguments(s, defaults.label)
    s.add_argument("--calibrate", action="store_true", help="contextual calibration")
    s.add_argument("--seed", type=int, default=defaults.seed)
    s.add_argument(
        "--steps",
        type=int,
        help="a fixed number of annealing steps per batch (default: each batch's search "
        "runs until it has converged)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


FALLBACK_WINDOW = 4096


async def _window(args: argparse.Namespace, backend: BackendConfig) -> int:
    """``--context-window``, else what the (first) server reports, else the fallback."""
    window = await known_window(backend, args.context_window)
    if window is None:
        print(
            f"icm: the server does not report its context window; assuming {FALLBACK_WINDOW} "
            "tokens (set --context-window)",
            file=sys.stderr,
        )
        return FALLBACK_WINDOW
    if args.context_window is None and backend.base_url:
        print(f"icm: context window {window} tokens (reported by the server)", file=sys.stderr)
    return window


def _config(args: argparse.Namespace, longest: int, window: int) -> ScaleConfig:
    room = window - longest - 16  # the target itself and the label word
    if room < 16:
        raise ConfigError(
            f"--context-window {window} cannot hold the longest example "
            f"(~{longest} tokens) and any demonstration"
        )
    try:
        search = SearchConfig(seed=args.seed, steps=args.steps)
        return ScaleConfig(
            label=LabelConfig(
                **strategy_settings(args),
                calibrate=args.calibrate,
                search=search,
            ),
            batch_tokens=args.batch_tokens or room,
            max_demo_tokens=args.max_demo_tokens or room,
            seed_examples=args.seed_examples,
            chunk_size=args.chunk_size,
            iterative=args.iterative,
            parallel_batches=args.parallel_batches,
            seed=args.seed,
        )
    except ValidationError as exc:
        raise option_error(exc) from None


async def run(args: argparse.Namespace) -> int:
    backend_settings = backend_config(args)
    given = load_input(args)
    path, dataset, task = given.path, given.dataset, given.task
    longest = estimate_tokens(task.render(given.longest))
    _config(args, longest, args.context_window or 1 << 30)  # bad options fail before any call
    config = _config(args, longest, await _window(args, backend_settings))
    summary_path, run_dir = output_paths(args, path)
    bars: dict[Phase, tqdm[Any]] = {}

    def on_plan(cut: Plan) -> None:
        print(
            f"icm: {len(dataset)} examples: ICM on {cut.seed_size} in {len(cut.batches)} "
            f"batches, propagation to {cut.rest_size} in {len(cut.chunks)} chunks",
            file=sys.stderr,
        )
        if args.quiet:
            return
        steps = args.steps * len(cut.batches) if args.steps is not None else None
        bars["icm"] = tqdm(total=steps, desc="icm", unit="step", file=sys.stderr)
        bars["propagate"] = tqdm(total=cut.rest_size, desc="propagate", unit="ex", file=sys.stderr)

    def on_progress(phase: Phase, n: int) -> None:
        if phase in bars:
            bars[phase].update(n)

    async with AsyncExitStack() as exits:
        run_files = exits.enter_context(RunDir(run_dir))  # locked until the outputs are written
        remove_stale_temps(args.out, summary_path)
        if run_files.prepare(restart=args.restart, resume=args.resume, marker=SCALE_HEAD):
            print(f"icm: resuming the run in {run_dir}", file=sys.stderr)
        backend = await open_backend(backend_settings, args, exits)
        await preflight_backend(backend, task, given.longest, path)
        try:
            with warnings.catch_warnings():  # load_input said so already
                warnings.simplefilter("ignore", SeparatorWarning)
                result = await label_large(
                    dataset.examples,
                    task,
                    backend,
                    config,
                    run_dir=run_files,
                    on_progress=on_progress,
                    on_plan=on_plan,
                )
        finally:
            for bar in bars.values():
                bar.close()
        result = result.with_gold(dataset.gold)
        write_labels_then_summary(
            args.out,
            [r.model_dump() for r in result.rows],
            summary_path,
            {"summary": result.summary.model_dump(), "config": config.model_dump()},
        )
    _print_summary(result, args.out, summary_path)
    return 0


def _print_summary(result: ScaleResult, out: Path, summary_path: Path) -> None:
    s = result.summary
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.label_counts.items()))
    lines = [
        f"labeled {s.examples} examples: {s.seed_examples} by ICM in {s.batches} batches, "
        f"{s.examples - s.seed_examples} by propagation in {s.chunks} chunks -> {out}",
        f"labels: {counts}; inconsistencies left by ICM: {s.icm_inconsistencies}; "
        f"repaired in propagation: {s.propagation_repairs}",
        f"backend calls: {s.calls}, prompt tokens: {s.prompt_tokens} "
        f"(server-cached {s.cached_tokens}), cache hits: {s.cache_hits}, retries: {s.retries}",
        f"wall time: {s.wall_time_s:.1f} s; summary -> {summary_path}",
    ]
    if s.resumed_batches or s.resumed_chunks:
        lines.append(f"resumed: {s.resumed_batches} batches and {s.resumed_chunks} chunks done")
    for name, value in (("ICM", s.gold_agreement_icm), ("propagated", s.gold_agreement_propagated)):
        if value is not None:
            lines.append(f"agreement with gold labels ({name}, evaluation only): {value:.1%}")
    print("\n".join(lines))
