"""Tasks: prompt templates, label words and consistency relations.

``get_task`` resolves what a user names on the command line or in code: a built-in task
name (``truthfulqa``, ``gsm8k``, ``comparison``, ``cities`` and the other statement tasks
of ``statements``) or the path of a declarative
``.json``/``.toml`` task config.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import TaskError
from .base import Label, PairConstraint, Relation, Task, TemplateTask, demo_text, demonstration
from .builtin import BUILTIN_TASKS, extract_final_answer
from .config import load_task_config
from .relations import (
    AllOf,
    AnswerConsistency,
    Asymmetry,
    Equivalence,
    Negation,
    Proposition,
    Propositions,
)

__all__ = [
    "BUILTIN_TASKS",
    "AllOf",
    "AnswerConsistency",
    "Asymmetry",
    "Equivalence",
    "Label",
    "Negation",
    "PairConstraint",
    "Proposition",
    "Propositions",
    "Relation",
    "Task",
    "TemplateTask",
    "demo_text",
    "demonstration",
    "extract_final_answer",
    "get_task",
    "load_task_config",
]

_CONFIG_SUFFIXES = (".json", ".toml")


def get_task(name_or_path: str | Path) -> TemplateTask:
    """A built-in task by name, or a task loaded from a ``.json``/``.toml`` config file.

    Built-in names win over a file of the same name in the working directory; give a path
    with a suffix (``./truthfulqa.toml``) to load a file instead. The result is a
    ``TemplateTask``, which implements the ``Task`` protocol.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in BUILTIN_TASKS:
        return BUILTIN_TASKS[text]
    path = Path(name_or_path)
    if path.suffix.lower() in _CONFIG_SUFFIXES or path.exists():
        return load_task_config(path)
    raise TaskError(
        f"unknown task {text!r}: built-in tasks are {', '.join(sorted(BUILTIN_TASKS))}; "
        "or give the path of a .toml/.json task config"
    )
