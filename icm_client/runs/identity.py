"""A run's identity: what its run directory is keyed by, part by part.

A run directory (``OUT.run``) holds one run: the same command continues it, and a different
run is refused, because continuing a checkpoint under other prompts, settings or another
model would mix two searches. The identity has four parts, each recorded next to the
checkpoint, so that a refusal names the part that differs (and, for the settings, which
setting) instead of a bare "something changed":

* ``input``: the examples (ids and fields);
* ``task``: its name, label words, every rendered prompt and the relation's constraints;
* ``settings``: the ``LabelConfig``/``ScaleConfig`` values;
* ``model``: the backend's identity, with the embedded model's engine and re-encoding left
  out (``run_model``).

The embedded Gemma is served by the prebuilt llama.cpp wheel on Q8_0 weights or, once
``python -m icm_client.local.native`` has built it, by a native build on BF16 weights. Both
are the same shipped weights, and their scores agree (mean |P(True) difference| 0.005 on the
cities sample, every statement on the same side of 0.5: ``benchmarks/local_speed.py``), so
a run started on one continues on the other. The score cache keeps them apart (its key is
the full identity): the continued run computes its scores anew, it does not mix them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..dataset import Example
from ..errors import ConfigError
from ..tasks.base import Task

#: The embedded model's name and the suffixes its server adds (weights' format, engine):
#: kept in step with ``local.server`` (``SHIPPED_MODEL_NAME``, ``WEIGHT_FORMATS``), which
#: this module does not import (it is the optional ``local`` extra's).
_EMBEDDED = re.compile(r"\bgemma-3-270m(?:-(?:q8_0|q4_0|f16|bf16))?(?:-native)?(?=:|$)")

RESTART_HINT = (
    "--restart starts it over in this directory (scores already paid for stay cached), or "
    "give another --out or --run-dir"
)


def run_model(identity: str) -> str:
    """``identity`` without the embedded model's engine and weights' format (see module)."""
    return _EMBEDDED.sub("gemma-3-270m (embedded)", identity)


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    input: str
    task: str
    settings: dict[str, Any]
    model: str

    @classmethod
    def of(
        cls, task: Task, examples: Sequence[Example], settings: Mapping[str, Any], identity: str
    ) -> RunIdentity:
        rows = (
            json.dumps([ex.id, dict(ex.fields)], sort_keys=True, default=str) for ex in examples
        )
        prompts = (f"{ex.id}\x00{task.render(ex)}" for ex in examples)
        constraints = (f"{c.i},{c.j},{sorted(c.allowed)}" for c in task.constraints(examples))
        return cls(
            input=_digest(rows),
            task=_digest([task.name, json.dumps(task.labels), *prompts, *constraints]),
            settings=json.loads(json.dumps(dict(settings), default=str)),
            model=run_model(identity),
        )

    @property
    def fingerprint(self) -> str:
        return _digest([json.dumps(asdict(self), sort_keys=True)])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def changes(self, recorded: object) -> list[str]:
        """What differs from ``recorded`` (a ``to_json`` of the run in the directory), in
        words; empty when ``recorded`` is not one (a checkpoint from before identities)."""
        if not isinstance(recorded, Mapping) or set(recorded) != set(asdict(self)):
            return []
        out: list[str] = []
        if recorded["input"] != self.input:
            out.append("the input (its examples' ids or fields)")
        elif recorded["task"] != self.task:
            out.append("the task (its template, label words or relation)")
        old, new = _flat(recorded["settings"]), _flat(self.settings)
        changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
        if changed:
            out.append(
                "the settings: "
                + ", ".join(f"{k} {_show(old.get(k))} -> {_show(new.get(k))}" for k in changed)
            )
        if recorded["model"] != self.model:
            out.append(f"the model: {recorded['model']} -> {self.model}")
        return out


def _flat(value: object, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _show(value: object) -> str:
    return "(none)" if value is None else json.dumps(value)


def refuse(where: str, identity: RunIdentity, recorded: object) -> ConfigError:
    """The error for a run directory that holds another run, naming what differs."""
    changes = identity.changes(recorded)
    what = (
        "; ".join(changes)
        if changes
        else "the input, task, settings or model (this directory's run does not record which)"
    )
    return ConfigError(
        f"this run directory belongs to a different run: changed since it started: {what}; "
        + RESTART_HINT,
        location=where,
    )
