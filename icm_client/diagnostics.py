"""Diagnostics of a labeling run, and the warnings that catch a silent failure.

Unsupervised elicitation fails quietly: a concept the model does not find salient, a small
model that copies its demonstrations until every label is the same, a search that never
accepted a step. A run's labels file looks the same either way. ``diagnose`` reads what a
run leaves behind (its summary, trajectory and rows) and says what it looks like:

* label balance, and collapse: ``all-same`` (one label) or ``near-constant`` (more than
  ``COLLAPSE`` of the examples on one label);
* inconsistencies the final labels still have;
* labels whose probability came from a top-k miss (``bounded``: an upper bound, not a value);
* the U trajectory: proposals, accepted and rejected steps, U from start to end;
* calls, tokens, cache hits, retries, time;

and turns the degenerate cases into ``Finding``s with a code, a message and what to try.
``icm label`` saves them to ``RUN_DIR/diagnostics.json`` and prints the warnings;
``icm report`` shows them again with a plot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

COLLAPSE = 0.9  # share of one label above which a run is "near-constant"
BOUNDED_SHARE = 0.1  # share of bounded labels that deserves a warning
FLAT = 1e-6  # U range below which the trajectory is "flat"
MIN_STEPS_FOR_FLAT = 10


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(_Frozen):
    code: str
    severity: Literal["warning", "note"]
    message: str


class TrajectoryStats(_Frozen):
    steps: int
    proposals: int  # steps whose proposed label differed from the current one
    accepted: int
    rejected: int
    energy_start: float | None
    energy_end: float | None
    energy_max: float | None


class Diagnostics(_Frozen):
    task: str | None
    examples: int  # rows with a label
    unlabeled: int = 0  # rows a budget-stopped run never labeled
    disagreeing: int | None = None  # labels the model itself would not predict (``agrees``)
    label_counts: dict[str, int]
    label_share: dict[str, float]
    collapse: Literal["none", "near-constant", "all-same"]
    inconsistencies: int | None
    bounded_labels: int
    bounded_ids: list[str]  # the first few
    mean_confidence: float | None
    labeled_by_search: int | None
    trajectory: TrajectoryStats
    usage: dict[str, float]
    gold_agreement: float | None
    findings: list[Finding]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def trajectory_stats(trajectory: Sequence[Mapping[str, Any]]) -> TrajectoryStats:
    energies = [float(s["energy"]) for s in trajectory if s.get("energy") is not None]
    proposals = sum(1 for s in trajectory if s.get("changed"))
    accepted = sum(1 for s in trajectory if s.get("accepted"))
    return TrajectoryStats(
        steps=len(trajectory),
        proposals=proposals,
        accepted=accepted,
        rejected=proposals - accepted,
        energy_start=energies[0] if energies else None,
        energy_end=energies[-1] if energies else None,
        energy_max=max(energies) if energies else None,
    )


def diagnose(
    summary: Mapping[str, Any],
    trajectory: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
) -> Diagnostics:
    """Diagnostics from a run summary (``RunSummary`` as JSON), its trajectory and its rows
    (``id``, ``label``, optionally ``confidence``, ``agrees`` and ``bounded``; rows with a
    null label are counted as ``unlabeled`` and left out of the rest)."""
    unlabeled = sum(r.get("label") is None for r in rows)
    rows = [r for r in rows if r.get("label") is not None]
    counts = Counter(str(r["label"]) for r in rows)
    n = len(rows)
    judged = [bool(r["agrees"]) for r in rows if r.get("agrees") is not None]
    top = max(counts.values()) if counts else 0
    collapse: Literal["none", "near-constant", "all-same"] = "none"
    if n and len(counts) == 1:
        collapse = "all-same"
    elif n and top / n > COLLAPSE:
        collapse = "near-constant"
    confidences = [float(r["confidence"]) for r in rows if r.get("confidence") is not None]
    bounded = [str(r["id"]) for r in rows if r.get("bounded")]
    usage_keys = ("calls", "prompt_tokens", "cached_tokens", "cache_hits", "retries")
    usage: dict[str, float] = {k: summary[k] for k in usage_keys if k in summary}
    if "wall_time_s" in summary:
        usage["wall_time_s"] = summary["wall_time_s"]
    d = Diagnostics(
        task=summary.get("task"),
        examples=n,
        unlabeled=unlabeled,
        disagreeing=judged.count(False) if judged else None,
        label_counts=dict(sorted(counts.items())),
        label_share={k: v / n for k, v in sorted(counts.items())} if n else {},
        collapse=collapse,
        inconsistencies=summary.get("inconsistencies"),
        bounded_labels=len(bounded),
        bounded_ids=bounded[:10],
        mean_confidence=math.fsum(confidences) / len(confidences) if confidences else None,
        labeled_by_search=summary.get("labeled_by_search"),
        trajectory=trajectory_stats(trajectory),
        usage=usage,
        gold_agreement=summary.get("gold_agreement"),
        findings=[],
    )
    return d.model_copy(update={"findings": _findings(d, summary)})


def _findings(d: Diagnostics, summary: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []

    def warn(code: str, message: str) -> None:
        out.append(Finding(code=code, severity="warning", message=message))

    n, t = d.examples, d.trajectory
    # --calibrate is only advice for a run that did not already use it.
    remedy = "a larger model" if summary.get("calibrate") else "--calibrate, a larger model"
    if d.collapse == "all-same":
        label = next(iter(d.label_counts))
        warn(
            "all-same",
            f"every example got the label {label!r}: the labels carry no information. Small "
            f"models copy their demonstrations' labels; try {remedy}, or check that the "
            "task's prompt asks what you mean",
        )
    elif d.collapse == "near-constant":
        label, count = max(d.label_counts.items(), key=lambda kv: kv[1])
        warn(
            "near-constant",
            f"{count} of {n} examples ({count / n:.0%}) got the label {label!r}: unless the "
            f"data really is that imbalanced, the search collapsed; try {remedy}",
        )
    if t.steps and t.accepted == 0:
        what = "proposed no change" if t.proposals == 0 else f"rejected all {t.proposals}"
        warn(
            "no-accepted-steps",
            f"the search accepted no step in {t.steps} ({what}): the labels are the initial "
            "random ones plus end-of-run predictions",
        )
    energies = (t.energy_start, t.energy_end, t.energy_max)
    if t.steps >= MIN_STEPS_FOR_FLAT and t.accepted and None not in energies:
        assert t.energy_start is not None and t.energy_max is not None
        if t.energy_max - t.energy_start < FLAT:
            warn("flat-energy", f"U did not rise over {t.steps} steps: the search found nothing")
    if summary.get("stopped") == "budget":
        warn(
            "unfinished",
            "the budget (--max-calls/--max-tokens, totals for the run) stopped the search "
            f"after {t.steps} steps"
            + (", before it converged" if summary.get("converged") is False else "")
            + (f"; {d.unlabeled} examples have label null" if d.unlabeled else "")
            + ": the labels may still change; the same command with a larger budget continues "
            "it from the cache",
        )
    elif d.unlabeled:
        warn(
            "unfinished",
            f"the run stopped before labeling every example ({d.unlabeled} have label null: "
            "a budget ran out); the same command with a larger budget continues it",
        )
    elif summary.get("converged") is False:
        warn(
            "unconverged",
            f"the search stopped at its cap of {t.steps} steps before it converged: the "
            "labels may still change; run again with a larger --max-steps (scores are cached)",
        )
    chains = [c for c in summary.get("chains") or [] if isinstance(c, Mapping)]
    if summary.get("undecided") and chains:
        best = float(summary.get("energy", chains[0]["energy"]))
        rivals = ", ".join(
            f"seed {c['seed']} ({c['start']}): U {float(c['energy']):.3f}, "
            f"{float(c['agreement']):.0%} of labels the same"
            for c in chains[1:]
        )
        warn(
            "undecided",
            f"the model does not decide the labeling: independent searches ended on different "
            f"labelings with nearly equal U (the labels: U {best:.3f}; {rivals}). Another "
            "concept, as coherent to this model as the one returned, competes with it",
        )
    if d.inconsistencies:
        warn(
            "inconsistent",
            f"{d.inconsistencies} related pairs still violate the task's consistency relation",
        )
    if n and d.bounded_labels / n > BOUNDED_SHARE:
        warn(
            "bounded",
            f"{d.bounded_labels} of {n} labels have a probability bounded by a top-k miss "
            "(a label word was not among the server's top logprobs); raise --top-k",
        )
    k = len(d.label_counts) or 2
    if d.mean_confidence is not None and d.mean_confidence < 1 / max(k, 2) + 0.1:
        warn(
            "low-confidence",
            f"mean confidence {d.mean_confidence:.2f} is near chance: the model barely "
            "prefers its own labels",
        )
    if d.labeled_by_search is not None and n and d.labeled_by_search < n / 2:
        out.append(
            Finding(
                code="few-searched",
                severity="note",
                message=f"only {d.labeled_by_search} of {n} labels come from the search, the "
                "rest were predicted at the end; a converging run (no --steps) searches all",
            )
        )
    if d.gold_agreement is not None and d.gold_agreement < 0.5 and k == 2:
        warn(
            "below-chance",
            f"agreement with gold is {d.gold_agreement:.0%}: below chance; the search may "
            "have found the inverted (or another) concept",
        )
    if summary.get("resumed_from_step") is not None:
        out.append(
            Finding(
                code="resumed",
                severity="note",
                message=f"resumed from step {summary['resumed_from_step']}",
            )
        )
    return out


def _cell(value: object) -> str:
    """A value as one markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(d: Diagnostics, summary: Mapping[str, Any]) -> str:
    """A short human-readable report."""
    t = d.trajectory
    lines = [f"# ICM run report: {d.task or 'unknown task'}", ""]
    for key, name in (("backend", "backend"), ("strategy", "strategy"), ("seed", "seed")):
        if key in summary:
            lines.append(f"- {name}: `{summary[key]}`")
    lines += [f"- examples: {d.examples}", "", "## Labels", "", "| label | count | share |"]
    lines.append("|---|---|---|")
    for label, count in d.label_counts.items():
        lines.append(f"| {label} | {count} | {d.label_share[label]:.1%} |")
    lines += [""]
    if d.mean_confidence is not None:
        lines.append(f"- mean confidence: {d.mean_confidence:.3f}")
    lines.append(f"- bounded by a top-k miss: {d.bounded_labels}")
    if d.inconsistencies is not None:
        lines.append(f"- inconsistencies left: {d.inconsistencies}")
    if d.gold_agreement is not None:
        lines.append(f"- agreement with gold (evaluation only): {d.gold_agreement:.1%}")
    lines += ["", "## Search", ""]
    lines.append(
        f"- steps: {t.steps}; proposals: {t.proposals}; accepted: {t.accepted}; "
        f"rejected: {t.rejected}"
    )
    if t.energy_start is not None:
        lines.append(
            f"- U: {t.energy_start:.3f} → {t.energy_end:.3f} (max {t.energy_max:.3f}); U is the "
            "score the search maximises: α × how well each label is predicted from the others "
            "(log-probability), minus the contradicting pairs"
        )
    if d.labeled_by_search is not None:
        lines.append(
            f"- labeled by the search: {d.labeled_by_search} of {d.examples} (the rest were "
            "predicted at the end, given the search's labels as demonstrations)"
        )
    if summary.get("converged") is not None:
        why = "the budget" if summary.get("stopped") == "budget" else "its --max-steps cap"
        lines.append(f"- converged: {'yes' if summary['converged'] else f'no (stopped by {why})'}")
    if "pairs_fixed" in summary:
        lines.append(
            f"- consistency repairs kept: {summary['pairs_fixed']} (ConsistencyFix: a pair "
            "whose labels contradict the task's relation, relabeled where that raised U)"
        )
    if summary.get("never_reproposed"):
        lines.append(
            f"- starting labels never revisited: {summary['never_reproposed']} (random labels "
            "the search started from and never proposed again: they may still hold their "
            "random value; a converging run revisits every label)"
        )
    chains = [c for c in summary.get("chains") or [] if isinstance(c, Mapping)]
    if chains:
        lines += ["", "## Chains", "", "| seed | start | full-context U | same labels |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {c['seed']} | {c['start']} | {float(c['energy']):.3f} | "
            f"{float(c['agreement']):.0%} |"
            for c in chains
        ]
    left = summary.get("violated_pairs") or []
    if left:
        lines += ["", "## Violated pairs left", "", "| example | example | relation |"]
        lines.append("|---|---|---|")
        lines += [f"| {_cell(a)} | {_cell(b)} | {_cell(why)} |" for a, b, why in left]
    lines += ["", "## Cost", ""]
    lines += [
        f"- wall time: {v:.1f} s" if k == "wall_time_s" else f"- {k.replace('_', ' ')}: {v:g}"
        for k, v in d.usage.items()
    ]
    ledger = summary.get("ledger")
    if isinstance(ledger, Mapping) and isinstance(ledger.get("total"), Mapping):
        t = ledger["total"]
        lines.append(
            f"- the run in total, over {ledger.get('invocations')} invocations (the figures "
            f"above: the last one): calls {t.get('calls')}, prompt tokens "
            f"{t.get('prompt_tokens')}, cache hits {t.get('cache_hits')}, wall time "
            f"{float(t.get('wall_time_s', 0)):.1f} s"
        )
    lines += ["", "## Warnings", ""]
    lines += [f"- **{f.code}**: {f.message}" for f in d.warnings] or ["- none"]
    notes = [f for f in d.findings if f.severity == "note"]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {f.code}: {f.message}" for f in notes]
    return "\n".join(lines) + "\n"
