"""Where the model is and how to reach it: one value, built once, read by everything that
opens a backend.

``BackendConfig`` is what ``connect`` takes and what the CLI's backend options build (their
defaults and help are its fields'); ``OpenAICompletions``/``OpenAIChat`` are built from it
by ``from_config``. The run's policies are other values: the cache, ``Retry``, ``Budget``
and ``Pace`` go to the ``ScoringClient`` (``client/policies.py``, ``client/pacing.py``).
Values are checked where they are used, by the transport and the backends, with messages
that name the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .transport import MAX_RESPONSE_BYTES, HTTPClient

WireAPI = Literal["auto", "completions", "chat"]
WIRE_APIS: tuple[WireAPI, ...] = ("auto", "completions", "chat")

DEFAULT_TIMEOUT = 120.0
"""Seconds for one request, whole (``--timeout``)."""

DEFAULT_TOP_K = 20
"""Logprobs asked for per completion (``--top-k``)."""

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
"""The environment variable the API key is read from (``--api-key-env``)."""

DEFAULT_CONCURRENCY = 8
"""Requests in flight at most (per endpoint, over several replicas)."""


class BackendConfig(BaseModel):
    """The settings of the backend a run scores with (see each field's description).

    ``BackendConfig()`` is the embedded local model; ``BackendConfig(base_url="http://...")``
    a server; several URLs are replicas of one model, routed with prefix affinity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: tuple[str, ...] = Field(
        default=(),
        description="OpenAI-compatible server, e.g. http://localhost:8000/v1; several "
        "(repeat --base-url) for replicas of one model (routed with prefix affinity and "
        "failover); none: the embedded local model",
    )
    model: str | None = Field(
        default=None, description="model name on the server (default: the server's first)"
    )
    provider: str = Field(
        default="auto",
        description="what the server supports (vllm, llamacpp, a hosted API...); 'auto' "
        "(default): known by its host name, else probed with a few tiny requests",
    )
    api: WireAPI = Field(
        default="auto",
        description="wire API: 'completions' (/v1/completions, base models), 'chat' "
        "(/v1/chat/completions with top_logprobs: instruct models, for prototyping only) or "
        "'auto' (default): completions, unless the server refuses them for this model",
    )
    api_key_env: str = Field(
        default=DEFAULT_API_KEY_ENV,
        description=f"environment variable holding the API key (default {DEFAULT_API_KEY_ENV})",
    )
    top_k: int = Field(default=DEFAULT_TOP_K, description="logprobs to request per call")
    max_concurrency: int = Field(
        default=DEFAULT_CONCURRENCY, description="requests in flight at most (per --base-url)"
    )
    timeout: float = Field(
        default=DEFAULT_TIMEOUT,
        description=f"the most one request may take, whole (default {DEFAULT_TIMEOUT:g}); "
        "every request has a deadline, so there is no value for none",
    )
    max_response_bytes: int = Field(
        default=MAX_RESPONSE_BYTES,
        description="refuse a server answer larger than this, decompressed (default "
        f"{MAX_RESPONSE_BYTES // 2**20} MB)",
    )
    http: HTTPClient = Field(
        default="httpx",
        description="HTTP client: httpx2's own (default) or aiohttp under its API (pip install "
        "'icm-client[aiohttp]'; less CPU with hundreds of requests in flight)",
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        """One URL, several, or None (the embedded model)."""
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else value
