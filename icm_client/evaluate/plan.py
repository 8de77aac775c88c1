"""What an evaluation will cost, said before its first model call, and its ETA.

``estimate_eval`` counts the calls ``evaluate`` makes, condition by condition, from the same
demonstration draws (``select_demos``) and the prompts' sizes (4 characters a token): the
zero-shot baseline predicts each scored test example once; every many-shot condition
predicts them once per seed after that seed's demonstrations; ``bootstrap`` first labels
its demonstrations (zero-shot, then ``bootstrap_rounds`` rounds of out-of-fold predictions).
Calibration adds one content-free call per context. The ``chat`` condition asks another
model and is not counted. Scores already in the cache cost nothing, so a re-run takes less.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..dataset import Example
from ..scoring.manyshot import estimate_tokens, select_demos
from ..tasks.base import Task, demo_text
from .core import EvalConfig, demo_pool

MANY_SHOT = ("icm", "gold", "random", "perturbed")
#: Calls before an ETA is shown: the first calls (connection, warm-up) are not typical.
MIN_TIMED_CALLS = 20


@dataclass(frozen=True)
class EvalPlan:
    conditions: tuple[str, ...]
    seeds: int
    scored: int
    demos: int  # demonstrations per seed, on average
    calls: int
    prompt_tokens: int

    def line(self) -> str:
        return (
            f"plan: {', '.join(self.conditions)} on {self.scored} test examples, {self.seeds} "
            f"seeds of about {self.demos} demonstrations: about {self.calls:,} model calls "
            f"and {self.prompt_tokens:,} prompt tokens (estimated from the prompt sizes; "
            "cached scores cost nothing)"
        )

    def eta(self, calls: int, elapsed_s: float) -> float | None:
        """Seconds left at the rate of the calls made so far; None until enough were timed."""
        if calls < MIN_TIMED_CALLS or elapsed_s <= 0:
            return None
        return max(self.calls - calls, 0) * elapsed_s / calls


def estimate_eval(
    task: Task,
    train: Sequence[Example],
    scored: Sequence[Example],
    config: EvalConfig,
    *,
    icm_labels: Mapping[str, object] | None = None,
    has_train_gold: bool = True,
) -> EvalPlan:
    """The plan of ``evaluate`` on ``scored`` (the test examples with a gold label)."""
    pool = demo_pool(train, icm_labels)
    cpt = config.chars_per_token
    longest = max(task.labels, key=len)

    def tokens(ex: Example) -> int:
        return estimate_tokens(task.render(ex), cpt)

    def demo_tokens(ex: Example) -> int:
        return estimate_tokens(demo_text(task.render(ex), longest), cpt)

    target = sum(tokens(ex) for ex in scored) / max(len(scored), 1)
    n, cal = len(scored), int(config.calibrate)
    draws = [
        [
            pool[j]
            for j in select_demos(
                task,
                pool,
                seed,
                max_tokens=config.max_demo_tokens,
                max_demos=config.max_demos,
                chars_per_token=cpt,
            )
        ]
        for seed in range(config.seeds)
    ]
    calls, prompt_tokens = 0.0, 0.0
    runs = [c for c in config.conditions if _runs(c, icm_labels, has_train_gold)]
    for condition in runs:
        if condition == "zero-shot":
            calls += n + cal
            prompt_tokens += n * target
            continue
        if condition not in (*MANY_SHOT, "bootstrap"):
            continue  # chat: another model's calls
        for demos in draws:
            context = sum(demo_tokens(ex) for ex in demos)
            calls += n + cal
            prompt_tokens += n * (context + target)
            if condition == "bootstrap" and demos:
                k = max(1, min(config.bootstrap_folds, len(demos)))
                own = sum(tokens(ex) for ex in demos) / len(demos)
                calls += len(demos) + config.bootstrap_rounds * (len(demos) + k * cal)
                per_round = len(demos) * (context * max(k - 1, 1) / k + own)
                prompt_tokens += len(demos) * own + config.bootstrap_rounds * per_round
    mean_demos = sum(len(d) for d in draws) / max(len(draws), 1)
    return EvalPlan(
        conditions=tuple(runs),
        seeds=config.seeds,
        scored=n,
        demos=round(mean_demos),
        calls=math.ceil(calls),
        prompt_tokens=math.ceil(prompt_tokens),
    )


def _runs(condition: str, icm_labels: Mapping[str, object] | None, train_gold: bool) -> bool:
    """Whether ``evaluate`` will run ``condition`` (else it reports it skipped)."""
    if condition == "icm":
        return icm_labels is not None
    if condition == "gold":
        return train_gold
    if condition == "perturbed":
        return train_gold and icm_labels is not None
    return True
