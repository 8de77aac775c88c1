"""What an evaluation returns: per seed, per condition, and as a printable table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..scoring.base import Prediction
from .stats import auroc, binomial_half_width, mean_ci

DESCRIPTIONS = {
    "majority": "always the test split's most common label (no model)",
    "zero-shot": "no demonstrations",
    "icm": "demonstrations labeled by ICM",
    "gold": "demonstrations with gold labels (the ceiling)",
    "random": "demonstrations with random labels",
    "perturbed": "gold labels perturbed to ICM's accuracy (paper Fig. 8)",
    "bootstrap": "bootstrapped few-shot labels, consistency-repaired",
    "chat": "a chat model answering zero-shot",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeedResult(_Frozen):
    seed: int
    accuracy: float
    auroc: float | None = None
    demos: int = 0
    demo_accuracy: float | None = None  # agreement of the demonstration labels with gold
    bounded: int = 0  # predictions with a label probability from a top-k bound
    unparsed: int | None = None  # chat answers that were no label word (counted wrong)

    @classmethod
    def of(
        cls,
        seed: int,
        preds: Mapping[int, Prediction],
        truth: Mapping[int, int],
        demos: int,
        demo_accuracy: float | None,
    ) -> SeedResult:
        right = sum(preds[t].argmax() == y for t, y in truth.items())
        area = None
        if all(len(preds[t].logprobs) == 2 for t in truth):
            margins = [preds[t].logprobs[0] - preds[t].logprobs[1] for t in truth]
            area = auroc(margins, [y == 0 for y in truth.values()])
        return cls(
            seed=seed,
            accuracy=right / len(truth),
            auroc=area,
            demos=demos,
            demo_accuracy=demo_accuracy,
            bounded=sum(preds[t].bounded for t in truth),
        )


class ConditionResult(_Frozen):
    name: str
    description: str
    skipped: str | None = None  # why the condition did not run
    seeds: list[SeedResult] = []
    accuracy: float | None = None  # mean over seeds
    ci95: float | None = None  # half-width over seeds (None: a single run)
    test_ci95: float | None = None  # half-width from the test split's size
    auroc: float | None = None
    demos: float | None = None
    demo_accuracy: float | None = None
    usage: dict[str, int] = {}
    wall_time_s: float = 0.0
    bounded: int = 0  # test predictions, over seeds, with a label probability from a bound

    @classmethod
    def of(
        cls,
        name: str,
        outcome: list[SeedResult] | str,
        n_scored: int,
        usage: dict[str, int],
        wall: float,
    ) -> ConditionResult:
        desc = DESCRIPTIONS.get(name, name)
        if isinstance(outcome, str):
            return cls(name=name, description=desc, skipped=outcome)
        acc, ci = mean_ci([s.accuracy for s in outcome])
        return cls(
            name=name,
            description=desc,
            seeds=outcome,
            accuracy=acc,
            ci95=ci,
            test_ci95=binomial_half_width(acc, n_scored),
            auroc=_mean([s.auroc for s in outcome]),
            demos=_mean([float(s.demos) for s in outcome]),
            demo_accuracy=_mean([s.demo_accuracy for s in outcome]),
            usage=usage,
            wall_time_s=round(wall, 3),
            bounded=sum(s.bounded for s in outcome),
        )


class EvalResult(_Frozen):
    task: str
    backend: str
    train_examples: int
    demo_pool: int
    test_examples: int
    scored_examples: int
    majority_label: str
    majority_accuracy: float
    config: dict[str, Any]
    conditions: list[ConditionResult]
    straddling: int | None = None  # test examples related to a train example (leaky split)

    def table(self, style: Literal["text", "markdown"] = "text") -> str:
        """One row per condition: accuracy ± 95% over seeds, ± 95% from the test size,
        AUROC, demonstrations (and how accurate their labels were), model calls."""
        head = ["condition", "accuracy", "±seeds", "±test", "AUROC", "demos", "demo acc", "calls"]
        rows = [
            [
                "majority",
                _pct(self.majority_accuracy),
                "",
                _pct(binomial_half_width(self.majority_accuracy, self.scored_examples)),
                "",
                "",
                "",
                "0",
            ]
        ]
        for c in self.conditions:
            if c.skipped is not None:
                rows.append([c.name, "skipped", c.skipped, "", "", "", "", ""])
                continue
            rows.append(
                [
                    c.name,
                    _pct(c.accuracy) + ("*" if c.bounded else ""),
                    "—" if c.ci95 is None else _pct(c.ci95),
                    _pct(c.test_ci95),
                    "" if c.auroc is None else f"{c.auroc:.2f}",
                    "" if c.demos is None else f"{c.demos:.0f}",
                    _pct(c.demo_accuracy),
                    str(c.usage.get("calls", 0)),
                ]
            )
        notes = self.bounded_notes()
        if style == "markdown":
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(lines + [""] * bool(notes) + notes)
        live = [r for r in rows if r[1] != "skipped"]
        widths = [max(len(r[k]) for r in [head, *live]) for k in range(len(head))]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
        for r in rows:
            if r[1] == "skipped":
                out.append(f"{r[0].ljust(widths[0])}  skipped: {r[2]}")
            else:
                out.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        return "\n".join(out + notes)

    def bounded_notes(self) -> list[str]:
        """A warning per condition (marked * in the table) whose scores were bounded: a label
        word outside the server's top-k gets only an upper bound, so accuracy and AUROC are
        not the model's."""
        out = []
        for c in self.conditions:
            if c.bounded:
                scored = self.scored_examples * len(c.seeds)
                out.append(
                    f"* warning: {c.name}: {c.bounded} of {scored} test scores were bounded "
                    "(a label word was not in the server's top-k logprobs): its accuracy and "
                    "AUROC rest on bounds; raise --top-k"
                )
        return out


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) / len(known) if known else None


def _pct(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}%"
