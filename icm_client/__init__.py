"""icm_client: label datasets without supervision by Internal Coherence Maximization.

The front door, for ``import icm_client as icm``::

    data = icm.load_dataset("claims.jsonl")
    task = icm.get_task("truthfulqa")
    async with icm.connect("http://localhost:8000/v1", task=task) as client:
        result = await icm.label(data.examples, task, client, icm.LabelConfig())

``icm.Progress(examples, task, config, client)`` prints the plan and is the ``on_step`` that
shows a progress bar, as ``icm label`` does.

``connect`` takes a ``BackendConfig`` (where the model is, how to reach it; or its fields
as keywords), builds a ``ScoringClient`` (cache, ``Retry``, concurrency limit, ``Budget``,
``Pace``) around an ``OpenAICompletions`` backend (``OpenAIChat`` where a server serves
only chat models: the prototyping route) and checks it; ``ScoringClient(backend, ...)`` does
the same for a backend built by hand.

The names in ``__all__`` are the supported API; the rest is reachable through the submodules.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .backends.anthropic import AnthropicSampler
from .backends.config import BackendConfig
from .backends.openai import OpenAIChat, OpenAICompletions
from .client import Budget, Pace, Retry, ScoringClient
from .connection import connect
from .dataset import load_dataset
from .errors import BackendError, ConfigError, ICMError
from .evaluate import EvalConfig, evaluate
from .pins import read_pins
from .progress import Progress
from .run import LabelConfig, label
from .scale.pipeline import ScaleConfig, label_large
from .search.config import SearchConfig
from .tasks import TemplateTask, get_task

__all__ = [
    "AnthropicSampler",
    "BackendConfig",
    "BackendError",
    "Budget",
    "ConfigError",
    "EvalConfig",
    "ICMError",
    "LabelConfig",
    "OpenAIChat",
    "OpenAICompletions",
    "Pace",
    "Progress",
    "Retry",
    "ScaleConfig",
    "ScoringClient",
    "SearchConfig",
    "TemplateTask",
    "connect",
    "evaluate",
    "get_task",
    "label",
    "label_large",
    "load_dataset",
    "read_pins",
]
