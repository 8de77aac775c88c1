"""Labeling a dataset end to end: scorer + search + the result rows and run summary.

This is the async Python API (``await label(...)``); the CLI is a thin sync edge over it.
It takes examples (never gold labels), a task and any backend, so it is as happy with the
embedded model as with a vLLM cluster behind a router.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .backends.base import Backend
from .dataset import Example, GoldLabels, examples_of
from .injection import SeparatorWarning, separator_fields, warning_text
from .pins import PinFile, pin_words, resolve_pins
from .runs.checkpoint import Checkpointer
from .runs.identity import RunIdentity
from .runs.journal import SpendJournal
from .runs.ledger import Ledger
from .runs.rundir import RunDir
from .scoring.context import BoundedContext, ContextScorer, ContextStrategy, ExactContext
from .search.anneal import Step
from .search.chains import Chains, ChainsResult
from .search.config import SearchConfig
from .search.consistency import Consistency
from .search.inputs import SearchInputs
from .tasks.base import Label, Task
from .tasks.check import check_task

Strategy = Literal["exact", "bounded"]


class LabelConfig(BaseModel):
    """How to label: the scoring strategy and the search settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Strategy = Field(
        "exact",
        description="exact: every other labeled example in context (the paper); "
        "bounded: at most context_size demonstrations per example (far cheaper)",
    )
    context_size: int = Field(32, ge=1, description="demonstrations per prompt for 'bounded'")
    context_share: int = Field(
        8,
        ge=1,
        description="targets that take the same demonstrations under 'bounded': their prompts "
        "share the whole context, which a server's prefix cache computes once",
    )
    calibrate: bool = Field(
        False,
        description="divide each prediction by that of a content-free input in the same "
        "context (one more, prefix-cached call per prediction); keeps small models that copy "
        "their demonstrations' labels from collapsing to one label",
    )
    search: SearchConfig = SearchConfig()


class LabelRow(BaseModel):
    """One output row.

    ``confidence`` is the model's probability of the row's label given all the other final
    labels as demonstrations, P(label | the other labels), normalised over the label words
    (calibrated with ``calibrate``). ``agrees`` says whether the label is also the model's
    own prediction in that context (its most probable label): in a coherent labeling every
    label is; a row that does not was kept by the search for consistency or for the labels
    of the others. ``label``, ``confidence`` and ``agrees`` are None only for examples a
    budget-stopped run never reached.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    label: str | None
    confidence: float | None
    agrees: bool | None = Field(None, description="the label is the model's own prediction")
    searched: bool = Field(
        description="labeled by the search (else pinned, or predicted at the end)"
    )
    bounded: bool = Field(description="a label probability came from a top-k bound")
    pinned: bool = Field(False, description="the label was pinned (given), not found")


class ChainSummary(BaseModel):
    """Where one of the run's independent searches ended (see search/chains.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    start: str = Field(description="random: the paper's annealing; zero-shot: greedy ascent")
    energy: float = Field(description="full-context U of its final labels")
    agreement: float = Field(description="share of its labels equal to the run's final ones")
    converged: bool | None = None


class RunSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    backend: str
    examples: int
    strategy: str
    context_size: int | None
    context_share: int | None = None
    calibrate: bool
    seed: int
    steps: int
    accepted: int
    converged: bool | None = Field(
        None,
        description="the search ended at convergence (True), at its max_steps cap (False); "
        "None: a fixed number of steps was asked for",
    )
    flips: int = Field(0, description="accepted steps that changed an existing label")
    never_reproposed: int | None = Field(
        None,
        description="initial labels the search never proposed again (None: resumed run)",
    )
    free_proposals: int = Field(
        0, description="proposals answered from predictions the search held: no model call"
    )
    pairs_fixed: int = Field(0, description="ConsistencyFix repairs kept")
    chains: list[ChainSummary] = Field(
        default_factory=list, description="each independent search's end, the winner first"
    )
    undecided: bool = Field(
        False,
        description="two chains ended on different labelings with nearly equal full-context "
        "U: the model does not decide between them",
    )
    polished: int = Field(
        0, description="labels changed by the full-context polish of a cheaper strategy"
    )
    violated_pairs: list[tuple[str, str, str]] = Field(
        default_factory=list,
        description="constraints the final labels violate: (id, id, reason); at most 1,000",
    )
    labeled_by_search: int
    pinned: int = Field(
        0,
        description="labels fixed by pins: demonstrations from the start, never relabeled, "
        "not counted in gold_agreement",
    )
    energy: float
    mutual_predictability: float
    inconsistencies: int
    label_counts: dict[str, int]
    unlabeled: int = 0
    stopped: str | None = Field(
        None, description='"budget": the budget ran out; "max-steps": the search hit its cap'
    )
    calls: int
    prompt_tokens: int
    cached_tokens: int
    cache_hits: int
    retries: int
    backend_counters: dict[str, int] = Field(
        default_factory=dict,
        description="a backend's own counters: scores routed to each replica and its failures, "
        "routing spills and failovers, probe requests, cache tokens of sampled scores",
    )
    bounded_predictions: int
    wall_time_s: float
    resumed_from_step: int | None = None
    gold_agreement: float | None = Field(
        None, description="agreement with gold labels over the unpinned examples"
    )
    gold_examples: int | None = None
    zero_shot_agreement: float | None = Field(
        None,
        description="agreement with gold of the same model's zero-shot labels (argmax of "
        "P(label | x), no demonstrations) on the same examples: what ICM has to beat",
    )
    zero_shot_calls: int | None = Field(
        None, description="the zero-shot baseline's backend calls, part of calls (0: cached)"
    )
    comparison: str | None = Field(
        None, description="ICM's agreement beside zero-shot, as printed (evaluation only)"
    )
    # The run's whole life (with a run directory): the figures above are this invocation's.
    ledger: Ledger | None = Field(
        None,
        description="totals over every invocation of the run (resumed, interrupted, re-run) "
        "and the last invocation's own figures",
    )

    @classmethod
    def of(cls, *parts: object, **values: object) -> RunSummary:
        """The summary from its parts (the search's result, the backend's usage, the
        settings): each field a part holds under the field's name, a later part's over an
        earlier one's, then ``values``."""
        fields: dict[str, object] = {}
        for part in parts:
            fields |= {k: getattr(part, k) for k in cls.model_fields if hasattr(part, k)}
        return cls.model_validate(fields | values)


class LabelResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: list[LabelRow]
    summary: RunSummary
    trajectory: list[dict[str, float | int | bool | None]] = Field(default_factory=list)

    def with_gold(
        self, gold: GoldLabels | None, zero_shot: Mapping[str, str] | None = None
    ) -> LabelResult:
        """Attach agreement with gold labels over the unpinned rows (a pin agrees by
        construction), and that of the ``zero_shot`` labels (id to label word) on the same
        examples. Evaluation only: the search never saw them."""
        labels = [(r.id, r.label) for r in self.rows if r.label is not None and not r.pinned]
        known = graded(labels, gold)
        if not known:
            return self
        update: dict[str, object] = {
            "gold_agreement": agreement(known),
            "gold_examples": len(known),
        }
        if zero_shot is not None and all(i in zero_shot for i, _ in known):
            update["zero_shot_agreement"] = agreement(
                graded([(i, zero_shot[i]) for i, _ in known], gold)
            )
        summary = self.summary.model_copy(update=update)
        return self.model_copy(update={"summary": summary})


def graded(labels: Iterable[tuple[str, str]], gold: GoldLabels | None) -> list[tuple[str, bool]]:
    """Each (id, label word) that has a gold label, and whether it agrees with it."""
    if gold is None:
        return []
    return [(i, label == g) for i, label in labels if (g := gold.get(i)) is not None]


def agreement(known: Sequence[tuple[str, bool]]) -> float:
    """The share of ``graded`` labels that agree (of at least one)."""
    return sum(agrees for _, agrees in known) / len(known)


def make_strategy(
    config: LabelConfig, examples: Sequence[Example], pinned: frozenset[int] = frozenset()
) -> ContextStrategy:
    if config.strategy == "bounded":
        ids = [ex.id for ex in examples]
        return BoundedContext(
            ids, config.context_size, config.search.seed, config.context_share, pinned
        )
    return ExactContext()


def run_identity(
    task: Task, examples: Sequence[Example], config: BaseModel, backend: Backend
) -> RunIdentity:
    """What a run's result depends on: the examples, every prompt, the label words, the
    constraints, the settings (``LabelConfig``, ``ScaleConfig``) and the model. A run
    directory refuses to resume a run with another one, naming what differs
    (``runs.identity``)."""
    return RunIdentity.of(task, examples, config.model_dump(), backend.identity)


async def label(
    examples: Sequence[Example],
    task: Task,
    backend: Backend,
    config: LabelConfig | None = None,
    on_step: Callable[[Step], None] | None = None,
    run_dir: str | os.PathLike[str] | RunDir | None = None,
    *,
    pins: Mapping[str, str] | PinFile | None = None,
) -> LabelResult:
    """Label ``examples`` by ICM. Gold labels cannot be passed: evaluate with ``with_gold``.

    With ``run_dir`` the run checkpoints there after accepted steps (see ``Checkpointer``)
    and, when the directory holds a checkpoint of the same run, continues from it; what it
    sends is recorded there before it is sent (``runs/journal.py``) and added to the run's
    ledger when it ends, however it ends. The directory is locked for the run (``RunDir``):
    a second run on it, from this API or the CLI, fails at once. A ``RunDir`` the caller
    already holds is used as it is.

    ``pins`` fixes some labels: example id -> label word as the labels file writes it
    (``{"q3-1": "False"}``), or a ``PinFile`` (``pins.read_pins``). Pinned examples are
    demonstrations from the start and never relabeled; their rows say ``pinned`` and
    ``with_gold`` leaves them out. An unknown id or label, or pins that break the task's
    consistency relation together, raise ``DataError`` before any model call.

    Before any call the task is checked against the examples (a field it reads that none
    has is a ``TaskError``), and a field holding a demonstration separator (a blank line)
    is a ``SeparatorWarning``.
    """
    exs = examples_of(examples)
    check_task(task, exs, source="the examples", allow_empty_relation=True)
    pinned = resolve_pins(pins or {}, exs, task)
    forged = separator_fields(exs)
    if forged:
        warnings.warn(warning_text(forged), SeparatorWarning, stacklevel=2)
    config = config or LabelConfig()
    with hold(run_dir) as run, _journal(backend, run) as journal:
        return await _search(exs, task, backend, config, on_step, run, pinned, journal)


@contextmanager
def hold(run_dir: str | os.PathLike[str] | RunDir | None) -> Iterator[RunDir | None]:
    """``run_dir`` locked for a run (``RunDir``): a ``RunDir`` the caller holds as it is,
    a path locked until the block ends; None without a run directory."""
    if run_dir is None or isinstance(run_dir, RunDir):
        yield run_dir
        return
    with RunDir(run_dir) as held:
        yield held


@contextmanager
def _journal(backend: Backend, run: RunDir | None) -> Iterator[SpendJournal | None]:
    """The run's spending journal: the one already recording ``backend`` (the CLI opens
    it before its preflight), else a new one; None without a run directory."""
    if run is None:
        yield None
        return
    journal = SpendJournal.attached(backend.counted(), run.path)
    if journal is not None:
        yield journal
        return
    with SpendJournal(run.path, backend.counted()) as journal:
        yield journal


async def _search(
    exs: tuple[Example, ...],
    task: Task,
    backend: Backend,
    config: LabelConfig,
    on_step: Callable[[Step], None] | None,
    run: RunDir | None,
    pinned: dict[int, Label],
    journal: SpendJournal | None,
) -> LabelResult:
    start = time.perf_counter()
    await backend.prepare()  # the identity (part of the fingerprint) must be final
    store = (
        run.store(
            run_identity(task, exs, config, backend),
            examples=len(exs),
            labels=len(task.labels),
            pins=pin_words(pinned, exs, task),
        )
        if run is not None
        else None
    )
    resume, past = store.load() if store is not None else (None, [])
    saver = Checkpointer(store, lambda: backend.counted().calls) if store is not None else None

    def step_done(step: Step) -> None:
        if store is not None:
            store.record(_step_json(step))
        if on_step is not None:
            on_step(step)

    scorer = ContextScorer(
        task,
        exs,
        backend,
        make_strategy(config, exs, frozenset(pinned)),
        calibrate=config.calibrate,
    )
    judge = (
        None
        if config.strategy == "exact"
        else ContextScorer(task, exs, backend, ExactContext(), calibrate=config.calibrate)
    )
    inputs = SearchInputs(
        scorer,
        Consistency(task.constraints(exs), len(exs)),
        [task.group(ex) for ex in exs],
        len(task.labels),
        config.search,
        step_done,
        saver.save if saver is not None else None,
        pinned=pinned,
    )
    search = Chains(inputs, judge)
    try:
        result = await search.run(resume)
    except BaseException:  # Ctrl-C, SIGTERM, a failing backend: what it cost still counts
        if journal is not None:
            journal.finish(finished=False, wall_time_s=time.perf_counter() - start)
        raise
    finally:
        if saver is not None:
            saver.flush()
    wall = time.perf_counter() - start
    scorers = [scorer] if judge is None else [scorer, judge]
    out = _result(task, backend, exs, config, result, scorers, wall, frozenset(pinned))
    update: dict[str, object] = {}
    if journal is not None:
        update["ledger"] = journal.finish(finished=True, wall_time_s=out.summary.wall_time_s)
    if resume is not None:  # the figures of the whole search, not of the steps run here
        update["resumed_from_step"] = resume.n
        update["steps"] = len(past) + out.summary.steps
        update["accepted"] = sum(bool(s["accepted"]) for s in past) + out.summary.accepted
    summary = out.summary.model_copy(update=update)
    return out.model_copy(update={"summary": summary, "trajectory": past + out.trajectory})


def _result(
    task: Task,
    backend: Backend,
    exs: Sequence[Example],
    config: LabelConfig,
    chains: ChainsResult,
    scorers: Sequence[ContextScorer],
    wall: float,
    pinned: frozenset[int],
) -> LabelResult:
    result = chains.result
    ends = sorted(chains.chains, key=lambda c: c is not chains.chains[chains.winner])
    words = [w.strip() for w in task.labels]
    rows = [
        LabelRow(
            id=ex.id,
            label=words[result.labels[i]],
            confidence=result.predictions[i].prob(result.labels[i]),
            agrees=result.predictions[i].argmax() == result.labels[i],
            searched=i in result.searched,
            bounded=result.predictions[i].bounded,
            pinned=i in pinned,
        )
        if i in result.labels
        else LabelRow(id=ex.id, label=None, confidence=None, searched=False, bounded=False)
        for i, ex in enumerate(exs)
    ]
    usage = backend.counted()
    bounded = config.strategy == "bounded"
    summary = RunSummary.of(
        config,
        result,
        usage.spent(),
        task=task.name,
        backend=backend.identity,
        examples=len(exs),
        context_size=config.context_size if bounded else None,
        context_share=config.context_share if bounded else None,
        seed=config.search.seed,
        steps=len(result.trajectory),
        accepted=sum(s.accepted for s in result.trajectory),
        chains=[ChainSummary.model_validate(c, from_attributes=True) for c in ends],
        undecided=bool(chains.undecided),
        polished=chains.polished,
        violated_pairs=[(exs[c.i].id, exs[c.j].id, c.reason) for c in result.violated[:1000]],
        labeled_by_search=len(result.searched),
        pinned=len(pinned),
        inconsistencies=len(result.violated),
        label_counts=dict(Counter(r.label for r in rows if r.label is not None)),
        unlabeled=sum(r.label is None for r in rows),
        backend_counters=dict(usage.extra),
        bounded_predictions=sum(x.stats.bounded for x in scorers),
        wall_time_s=round(wall, 3),
    )
    trajectory = [_step_json(s) for s in result.trajectory]
    return LabelResult(rows=rows, summary=summary, trajectory=trajectory)


def _step_json(s: Step) -> dict[str, float | int | bool | None]:
    return {
        "n": s.n,
        "temperature": s.temperature,
        "example": s.example,
        "changed": s.changed,
        "accepted": s.accepted,
        "energy": s.energy,
        "candidate_energy": s.candidate_energy,
        "labeled": s.labeled,
        "inconsistencies": s.inconsistencies,
    }
