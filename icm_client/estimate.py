"""What a labeling run will cost, said before its first model call, and a steady ETA.

``estimate_run`` follows the search's expected course without running it: it starts with
``initial_labeled`` labels, and each step scores one drawn example and, when the proposed
label differs (always for a new example, sometimes for a labeled one), re-scores every
labeled example whose context contains it: all of them under ``exact``, about
``context_size`` of them under ``bounded``; with constrained pairs, some changes leave an
inconsistent pair whose repair scores two more label options. Prompts hold the
demonstrations of that context plus the target, at the task's mean prompt size.
Calibration adds one content-free call per prediction, or under ``bounded`` one per
``context_share`` predictions (a group's targets share it). A converging run ends with the
global moves (``search.moves.global_moves``): the complement of the labeling and the model's
predictions under it, two evaluations of every example. Real runs differ with
the search's path (acceptances, repairs, the scorer's memo), so the plan is an estimate,
and ``Eta`` corrects it with what the run has measured so far.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .tasks.base import demo_text

if TYPE_CHECKING:
    from .dataset import Example
    from .run import LabelConfig
    from .tasks.base import Task

#: Share of steps on an already labeled example whose proposal differs from its label.
RELABEL_RATE = 0.25
#: Share of changed steps that leave an inconsistent pair to repair, per constrained pair
#: per example (a repair round scores two label options of the pair, each re-scoring like
#: a step).
REPAIR_RATE = 0.5
#: Calls before an ETA is shown: the first calls (connection, warm-up) are not typical.
MIN_TIMED_CALLS = 20


@dataclass(frozen=True)
class RunPlan:
    """Expected calls and prompt tokens: ``cumulative_calls[k]`` after step k (0: the seed
    labels' evaluation), and the end-of-run predictions of the examples left unlabeled."""

    examples: int
    steps: int
    strategy: str
    context_size: int | None
    calibrate: bool
    cumulative_calls: tuple[float, ...]
    calls: int
    prompt_tokens: int
    converging: bool = False  # the run ends at convergence; ``steps``: those that call
    chains: int = 1  # independent searches, ``steps`` counting all of them

    def calls_between(self, start: int, end: int) -> float:
        """Expected calls of steps ``start + 1`` to ``end``."""
        last = len(self.cumulative_calls) - 1
        return self.cumulative_calls[min(end, last)] - self.cumulative_calls[min(start, last)]

    def _steps(self) -> str:
        per_chain = self.steps // max(self.chains, 1)
        each = f" in each of {self.chains} chains" if self.chains > 1 else ""
        if self.converging:
            return f"search until converged (estimated as {per_chain} steps{each})"
        return f"{per_chain} search steps{each}"

    def line(self) -> str:
        how = self.strategy
        if self.context_size is not None:
            how += f" ({self.context_size} demonstrations per prompt)"
        if self.calibrate:
            how += ", calibrated"
        return (
            f"plan: {self.examples} examples, {self._steps()}, strategy {how}: "
            f"about {_round(self.calls):,} model calls and {_round(self.prompt_tokens):,} "
            "prompt tokens (estimated from the prompt sizes; the search's path moves it, "
            "often by a third either way)"
        )


def estimate_run(
    examples: int,
    config: LabelConfig,
    *,
    mean_prompt_tokens: float,
    pairs: int = 0,
) -> RunPlan:
    """The expected cost of labeling ``examples`` examples with ``config`` (see the module
    docstring). A converging run (no fixed ``steps``) counts 4N steps: 2N steps to label
    and cool, then sweeps, whose proposals are free until a label changes; 4N steps matched
    the calls of the README demo. Every chain of the run (search/chains.py) is counted as a
    whole search."""
    search = config.search
    steps = (search.steps or 4 * examples) * search.chains
    converging = search.steps is None
    calibrate = config.calibrate
    n = examples
    size = config.context_size if config.strategy == "bounded" else None
    share = config.context_share if size is not None else 1
    factor = 1 + 1 / share if calibrate else 1
    repairs = REPAIR_RATE * min(1.0, pairs / n) if n else 0.0

    def demos(labeled: float) -> float:
        others = max(labeled - 1, 0.0)
        return others if size is None else min(float(size), others)

    def per_call(labeled: float) -> float:
        return (demos(labeled) + 1) * mean_prompt_tokens

    labeled = float(min(search.initial_labeled, n))
    calls = labeled * factor
    tokens = calls * per_call(labeled)
    cumulative = [calls]
    for _ in range(steps):
        new = (n - labeled) / n if n else 0.0
        change = new + (1 - new) * RELABEL_RATE
        after = labeled + new
        rescored = after if size is None else min(float(size), after) + 1
        step_calls = (1 + change * rescored * (1 + 2 * repairs)) * factor
        calls += step_calls
        tokens += step_calls * per_call(after)
        cumulative.append(calls)
        labeled = after
    final = max(n - labeled, 0.0) * factor  # predictions of what the search never labeled
    if converging:  # the global moves that end it: the complement and its predictions
        final += 2 * labeled * factor
    calls += final
    tokens += final * per_call(labeled)
    return RunPlan(
        examples=n,
        steps=steps,
        strategy=config.strategy,
        context_size=size,
        calibrate=calibrate,
        cumulative_calls=tuple(cumulative),
        calls=math.ceil(calls),
        prompt_tokens=math.ceil(tokens),
        converging=converging,
        chains=search.chains,
    )


#: Word pieces of a prompt, as the tokenizers of the models here split them: a word with its
#: leading space, a digit (a space before it is a token of its own), a punctuation mark (with
#: its leading space), a run of whitespace.
_PIECES = re.compile(r" ?[A-Za-z]+| \d|\d| ?[^\sA-Za-z\d]|\s+")


def text_tokens(text: str) -> int:
    """Estimated tokens of ``text``: one per word (long words more), digit, punctuation mark
    and whitespace run. Within 8% of Gemma's count on the cities, TruthfulQA and arithmetic
    samples, where 4 characters a token missed digits-heavy text by 44% (each digit is a
    token: "22 + 11 = 33" is 10)."""
    count = 0
    for piece in _PIECES.finditer(text):
        s = piece.group()
        word = s.lstrip(" ")
        if word.isalpha():
            count += math.ceil(len(word) / 8)
        else:
            count += 2 if s[0] == " " and word.isdigit() else 1
    return count


def demonstration_tokens(task: Task, prompts: Sequence[str]) -> float:
    """A demonstration's estimated size in tokens: the mean prompt plus the longest label word
    and the blank line after it."""
    label = text_tokens(demo_text("", max(task.labels, key=len)))
    return sum(text_tokens(p) for p in prompts) / max(len(prompts), 1) + label


def plan_label(
    examples: Sequence[Example],
    task: Task,
    config: LabelConfig,
    *,
    mean_prompt_tokens: float | None = None,
    pairs: int | None = None,
) -> RunPlan:
    """The plan of ``label(examples, task, client, config)``: ``estimate_run`` with the
    prompts' mean size and the relation's constrained pairs (computed here unless given)."""
    if mean_prompt_tokens is None:
        mean_prompt_tokens = demonstration_tokens(task, [task.render(ex) for ex in examples])
    if pairs is None:
        pairs = len(task.constraints(examples))
    return estimate_run(len(examples), config, mean_prompt_tokens=mean_prompt_tokens, pairs=pairs)


class Eta:
    """Seconds left, from the plan's remaining calls scaled by what the run measured.

    Both measured quantities are cumulative (seconds per call, calls per expected call
    since the start), so the estimate settles instead of swinging with each step's cost,
    as a per-step rate does when one step costs one call and the next fifty.
    """

    def __init__(self, plan: RunPlan, start_step: int = 0) -> None:
        self.plan = plan
        self.start_step = start_step

    def seconds_left(self, step: int, calls: int, elapsed_s: float) -> float | None:
        """None until ``MIN_TIMED_CALLS`` calls were timed."""
        if calls < MIN_TIMED_CALLS or elapsed_s <= 0:
            return None
        expected = self.plan.calls_between(self.start_step, step)
        ratio = calls / expected if expected > 0 else 1.0
        ratio = min(max(ratio, 0.25), 4.0)
        left = self.plan.calls_between(step, self.plan.steps)
        left += self.plan.calls - self.plan.cumulative_calls[-1]  # the final predictions
        return max(left, 0.0) * ratio * (elapsed_s / calls)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _round(value: int) -> int:
    """Two significant figures: an estimate should not look like a measurement."""
    if value < 100:
        return value
    digits = len(str(value)) - 2
    return int(round(value, -digits))
