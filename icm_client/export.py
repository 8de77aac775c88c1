"""Labels, taken to the next step: fine-tuning and reward-model data.

* ``labeled_records``: each example's input fields with its ``label`` and ``confidence``;
* ``preference_pairs``: for comparison tasks (an ``Asymmetry`` relation), the DPO /
  reward-model format ``{"prompt", "chosen", "rejected"}``, one per distinct comparison;
* ``chat_records``: chat fine-tuning JSONL, ``{"messages": [system, user, assistant]}``, the
  user turn asking exactly what the "zero-shot (chat)" baseline asks and the assistant
  answering with the label word;
* ``to_hf_dataset``: any of those as a Hugging Face ``datasets.Dataset`` (the ``hf`` extra).

Gold labels never reach an export: examples carry none (see ``dataset``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends.one_word import SYSTEM, instruction, label_words
from .dataset import Example
from .errors import ConfigError, DataError
from .runs.files import LabelLine
from .tasks.base import Task
from .tasks.relations import Asymmetry

if TYPE_CHECKING:
    from datasets import Dataset

INSTALL_HINT = "pip install 'icm-client[hf]'"


def join(
    examples: Sequence[Example], rows: Iterable[LabelLine], min_confidence: float | None = None
) -> list[tuple[Example, LabelLine]]:
    """(example, label row) pairs in the examples' order. Rows naming no example are an
    error (labels of another file); examples without a row, or below ``min_confidence``, are
    left out."""
    by_id = {ex.id: ex for ex in examples}
    rows = list(rows)
    strays = [r.id for r in rows if r.id not in by_id]
    if strays:
        raise DataError(
            f"{len(strays)} label rows name no example of the input (first: {strays[0]!r}); "
            "are the labels from another file?"
        )
    keep = {
        r.id: r
        for r in rows
        if min_confidence is None or (r.confidence is not None and r.confidence >= min_confidence)
    }
    return [(ex, keep[ex.id]) for ex in examples if ex.id in keep]


def labeled_records(pairs: Iterable[tuple[Example, LabelLine]]) -> list[dict[str, Any]]:
    return [
        {"id": ex.id, **ex.fields, "label": row.label, "confidence": row.confidence}
        for ex, row in pairs
    ]


def chat_records(task: Task, pairs: Iterable[tuple[Example, LabelLine]]) -> list[dict[str, Any]]:
    words = label_words(task.labels)
    question = instruction(words)
    out = []
    for ex, row in pairs:
        _check_word(row, words)
        out.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{task.render(ex)}\n\n{question}"},
                    {"role": "assistant", "content": row.label},
                ]
            }
        )
    return out


@dataclass(frozen=True)
class PairStats:
    pairs: int  # written
    duplicates: int  # a comparison and its swap agreeing: one pair
    conflicts: int  # a comparison and its swap both preferring their first response: dropped


def preference_pairs(
    task: Task, pairs: Iterable[tuple[Example, LabelLine]]
) -> tuple[list[dict[str, str]], PairStats]:
    """``{"prompt", "chosen", "rejected"}`` per distinct comparison. The label word
    ``labels[0]`` (" True": response 1 is better) makes the first response the chosen one.
    A comparison and its swap say the same thing when consistent (kept once) and contradict
    each other when not (both dropped)."""
    relation = getattr(task, "relation", None)
    if not isinstance(relation, Asymmetry):
        raise ConfigError(
            f"preference pairs need a comparison task (an Asymmetry relation naming the "
            f"prompt and the two responses): task {task.name!r} has none; --format labels "
            "or chat export any task"
        )
    words = label_words(task.labels)
    if len(words) != 2:
        raise ConfigError(f"preference pairs need two labels, task {task.name!r} has {words}")
    seen: dict[tuple[str, str, str], int] = {}
    out: list[dict[str, str] | None] = []
    duplicates = 0
    for ex, row in pairs:
        _check_word(row, words)
        group = relation.group_field
        prompt, a, b = (
            "\n".join(str(ex.fields.get(f, "") or "") for f in ((f,) if isinstance(f, str) else f))
            for f in (group, relation.first_field, relation.second_field)
        )
        chosen, rejected = (a, b) if row.label == words[0] else (b, a)
        key = (prompt, chosen, rejected)
        if key in seen:
            duplicates += 1
            continue
        opposite = seen.get((prompt, rejected, chosen))
        if opposite is not None:
            out[opposite] = None
        seen[key] = len(out)
        out.append(None if opposite is not None else _pair(prompt, chosen, rejected))
    kept = [p for p in out if p is not None]
    conflicts = sum(1 for p in out if p is None) // 2
    return kept, PairStats(len(kept), duplicates, conflicts)


def to_hf_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """A ``datasets.Dataset`` of ``records`` (any export above)."""
    try:
        from datasets import Dataset
    except ImportError:
        raise ConfigError(f"the Hugging Face export needs datasets: {INSTALL_HINT}") from None
    try:
        return Dataset.from_list(list(records))
    except (TypeError, ValueError) as exc:  # pyarrow: a field with mixed types
        raise DataError(f"cannot build a datasets.Dataset: {exc}") from None


def _pair(prompt: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _check_word(row: LabelLine, words: Sequence[str]) -> None:
    if row.label not in words:
        raise DataError(
            f"label {row.label!r} of example {row.id!r} is not a label word of the task "
            f"({', '.join(words)})"
        )
