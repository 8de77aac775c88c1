"""The values a search passes around and hands out: a scored labeling (``State``), one step
of the walk (``Step``), what resumes it (``Checkpoint`` and its ``Tally``) and its end
(``SearchResult``)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..scoring.base import Prediction
from ..tasks.base import Label, PairConstraint


@dataclass(frozen=True, slots=True)
class State:
    """A labeling and its score: U = alpha * mutual predictability - I(D)."""

    labels: dict[int, Label]
    predictions: dict[int, Prediction]  # leave-one-out predictions of the labeled examples
    violated: frozenset[int]  # indices of violated constraints
    mutual_predictability: float
    energy: float


@dataclass(frozen=True, slots=True)
class Step:
    """One iteration of Algorithm 1, for progress bars and the run's trajectory."""

    n: int
    temperature: float
    example: int  # -1 for the global moves
    previous: Label | None
    proposed: Label
    changed: bool  # False when the proposal equals the current label (no evaluation)
    accepted: bool
    energy: float  # U of the state after this step
    candidate_energy: float | None
    labeled: int
    inconsistencies: int

    @classmethod
    def after(
        cls,
        n: int,
        temperature: float,
        example: int,
        previous: Label | None,
        proposed: Label,
        state: State,
        candidate: State | None,
        accepted: bool,
    ) -> Step:
        """Step ``n``, which left ``state`` after scoring ``candidate`` (None: the proposal
        equalled the current label, nothing was scored)."""
        return cls(
            n,
            temperature,
            example,
            previous,
            proposed,
            candidate is not None,
            accepted,
            state.energy,
            None if candidate is None else candidate.energy,
            len(state.labels),
            len(state.violated),
        )


@dataclass
class Tally:
    """The search's counts, kept in each checkpoint (the steps replayed on resume add the
    same counts again, so a resumed search ends with an uninterrupted one's figures)."""

    flips: int = 0  # accepted steps that changed an existing label
    pairs_fixed: int = 0  # ConsistencyFix repairs kept in the accepted states
    free_proposals: int = 0  # proposals answered from the state's predictions
    proposed: set[int] = field(default_factory=set)
    seeds: frozenset[int] | None = None  # the initial labels (None: not known)

    def to_json(self) -> dict[str, object]:
        return {
            "flips": self.flips,
            "pairs_fixed": self.pairs_fixed,
            "free_proposals": self.free_proposals,
            "proposed": sorted(self.proposed),
            "seeds": None if self.seeds is None else sorted(self.seeds),
        }

    @classmethod
    def from_json(cls, data: object) -> Tally:
        """Raises ``ValueError`` on anything but a ``to_json`` value."""
        counts = ("flips", "pairs_fixed", "free_proposals")
        if not isinstance(data, dict) or not {*counts, "proposed", "seeds"} <= data.keys():
            raise ValueError("checkpoint tally malformed")
        proposed, seeds = data["proposed"], data["seeds"]
        values = [data[k] for k in counts]
        indices = [*proposed, *(seeds or [])] if isinstance(proposed, list) else None
        if (
            not all(isinstance(v, int) and v >= 0 for v in values)
            or indices is None
            or not (seeds is None or isinstance(seeds, list))
            or not all(isinstance(i, int) and i >= 0 for i in indices)
        ):
            raise ValueError("checkpoint tally malformed")
        flips, fixed, free = values
        return cls(flips, fixed, free, set(proposed), None if seeds is None else frozenset(seeds))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything needed to continue a search after step ``n``: the labels and the RNG state.

    Predictions and energies are not stored: given the scores (which a disk cache keeps),
    they are recomputed exactly, so a resumed search ends with the labels of an uninterrupted
    one. Emitted after the initial ConsistencyFix (``n == 0``) and after every accepted step;
    rejected steps after the last checkpoint are replayed on resume (their scores are cached).
    """

    n: int
    labels: dict[int, Label]
    rng_state: tuple[int, tuple[int, ...], float | None]  # random.Random.getstate()
    # The search's counts up to step n (``Tally.to_json``), so that a resumed search reports
    # the figures of the whole search; None in checkpoints written before they were kept.
    tally: dict[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        version, internal, gauss = self.rng_state
        data: dict[str, object] = {
            "n": self.n,
            "labels": {str(i): y for i, y in sorted(self.labels.items())},
            "rng_state": [version, list(internal), gauss],
        }
        if self.tally is not None:
            data["tally"] = self.tally
        return data

    @classmethod
    def from_json(cls, data: object) -> Checkpoint:
        """Rebuild from ``to_json`` output; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict) or not {"n", "labels", "rng_state"} <= data.keys():
            raise ValueError("checkpoint is not an object with n, labels and rng_state")
        n, labels, rng_state = data["n"], data["labels"], data["rng_state"]
        if type(n) is not int or n < 0 or not isinstance(labels, dict):  # not True, not -1
            raise ValueError("checkpoint n or labels malformed")
        if not all(isinstance(i, str) and i.isascii() and i.isdecimal() for i in labels):
            raise ValueError("checkpoint labels are not keyed by example index")
        try:
            parsed = {int(i): y for i, y in labels.items()}
            version, internal, gauss = rng_state
            state = (version, tuple(internal), gauss)
            random.Random().setstate(state)  # validates version and the 625 words
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint labels or rng_state malformed: {exc}") from None
        if not all(type(y) is int and y >= 0 for y in parsed.values()):
            raise ValueError("checkpoint labels are not label indices")
        tally = data.get("tally")
        if tally is not None:
            Tally.from_json(tally)  # validates
        return cls(n, parsed, state, tally)


@dataclass
class SearchResult:
    labels: dict[int, Label]  # every example: searched labels plus end-of-run predictions
    searched: frozenset[int]  # examples whose label came from the search itself
    predictions: dict[int, Prediction]  # final leave-one-out prediction of every example
    energy: float
    mutual_predictability: float
    violated: list[PairConstraint]  # constraints violated by the final labels of all examples
    trajectory: list[Step] = field(default_factory=list)
    stopped: str | None = None  # "budget", or "max-steps" (a converging run hit its cap)
    converged: bool | None = None  # None: a fixed number of steps was asked for
    flips: int = 0  # accepted steps that changed an existing label
    pairs_fixed: int = 0  # ConsistencyFix repairs kept in the accepted states
    free_proposals: int = 0  # proposals answered from the state's predictions: no model call
    never_reproposed: int | None = None  # initial labels never proposed again (None: resumed)
