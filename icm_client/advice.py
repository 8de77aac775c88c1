"""Plain advice from a run's diagnostics: what the warnings mean for this model and task.

``diagnose`` says what a run looks like (collapse, labels the model would not predict,
inconsistencies); ``advise`` says what to do about it, in the terms of the choice a user
actually has (another model, more steps, a larger budget). It reads nothing but the
``Diagnostics`` and the summary, so it is a pure function and is tested on diagnostics
values directly.

The central case: a base model too small for ICM copies the labels of its demonstrations
instead of judging the content. Its runs either collapse to one label (every label is then
"predicted" by the others) or, when calibration prevents that, end with labels the model
barely prefers (confidence near chance) and often does not predict at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .diagnostics import Diagnostics

#: Share of labels the model would not predict itself, above which (with near-chance
#: confidence) its predictions follow the demonstrations rather than the content.
DISAGREE_SHARE = 0.25
#: Mean confidence within this distance of chance is "near chance".
NEAR_CHANCE = 0.1

COPIES = (
    "the model copies its demonstrations: its predictions follow the labels in its context, "
    "not the content, so this model is too small for ICM on this task; try a larger base "
    "model with --base-url (the paper uses Llama 3.1 8B and 70B)"
)


def copies_demonstrations(d: Diagnostics) -> bool:
    """The run looks like a model that copies its demonstrations' labels (see module)."""
    if d.collapse != "none":
        return True
    if d.mean_confidence is None or not d.examples:
        return False
    k = max(len(d.label_counts), 2)
    near_chance = d.mean_confidence < 1 / k + NEAR_CHANCE
    disagree = d.disagreeing is not None and d.disagreeing / d.examples > DISAGREE_SHARE
    return near_chance and (disagree or d.disagreeing is None)


def _go_on(summary: Mapping[str, Any]) -> str:
    """How to let an unfinished search go on: a budget stop needs a larger budget."""
    if summary.get("stopped") == "budget":
        return (
            "the budget stopped it: the same command with a larger --max-calls/--max-tokens "
            "continues from the cache"
        )
    return "let the search converge (no --steps, a larger --max-steps)"


def advise(d: Diagnostics, summary: Mapping[str, Any]) -> list[str]:
    """Advice, most important first; empty when the run looks sound."""
    out: list[str] = []
    copies = copies_demonstrations(d)
    if copies:
        advice = COPIES
        if d.collapse != "none" and not summary.get("calibrate", False):
            advice += "; --calibrate keeps it from collapsing to one label"
        out.append(advice)
    elif d.disagreeing and d.examples and d.disagreeing / d.examples > DISAGREE_SHARE:
        what = f"{d.disagreeing} of {d.examples} labels are not what the model itself predicts "
        if summary.get("converged"):
            out.append(
                what + "given the others, although the search converged: changing any of them "
                "lowers U (through the relation or the other examples' predictions), so the "
                "model's own view of this data is not coherent; a larger model may be"
            )
        else:
            out.append(
                what + "given the others: the labeling is not yet coherent; " + _go_on(summary)
            )
    if any(f.code == "undecided" for f in d.warnings) and not copies:
        out.append(
            "the model does not decide between two labelings of this data: do not take the "
            "labels as its answer yet. Give it more examples (a concept the model holds grows "
            "more coherent with data, a spurious one does not), try a larger base model, or "
            "pin a few labels you know with --pin (icm review lists the least certain)"
        )
    if d.inconsistencies and not copies:
        if summary.get("converged"):
            out.append(
                f"{d.inconsistencies} related pairs still contradict each other: the search "
                "converged, and repairing them lowers U (the model is confident in both "
                "labels); icm report lists them"
            )
        else:
            out.append(
                f"{d.inconsistencies} related pairs still contradict each other: the search "
                "ended before repairing them; " + _go_on(summary)
            )
    if d.unlabeled:
        out.append(
            f"the budget stopped the run with {d.unlabeled} examples unlabeled (label null); "
            "the same command with a larger --max-calls/--max-tokens (totals for the run) "
            "continues from the cache"
        )
    if d.examples and d.bounded_labels / d.examples > 0.1:
        out.append(
            f"{d.bounded_labels} label probabilities are only bounds (a label word was not in "
            "the server's top logprobs): raise --top-k"
        )
    return out


def undecided(d: Diagnostics, summary: Mapping[str, Any]) -> str | None:
    """Why the model did not decide the run's labeling (its result is no answer to compare
    with anything), or None when nothing says so."""
    if copies_demonstrations(d):
        return "its predictions follow the labels in its context, not the content"
    return None


def _percent(share: float) -> str:
    return f"{round(100 * share, 1):g}%"


def comparison(d: Diagnostics, summary: Mapping[str, Any]) -> str | None:
    """ICM's agreement with gold beside the same model's zero-shot agreement, one line
    ("ICM 95% vs zero-shot 80% on 40 examples, no labels used"); it claims nothing when the
    model did not decide the labeling. None without both figures."""
    icm, zero = summary.get("gold_agreement"), summary.get("zero_shot_agreement")
    if icm is None or zero is None:
        return None
    line = (
        f"ICM {_percent(icm)} vs zero-shot {_percent(zero)} on {summary['gold_examples']} "
        "examples, no labels used"
    )
    why = undecided(d, summary)
    if why is not None:
        line += f"; no win to claim: the model did not decide this labeling ({why})"
    return line
