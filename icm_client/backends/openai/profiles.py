"""What an OpenAI-compatible ``/v1/completions`` host can do, as data.

One class (``OpenAICompletions``) speaks the API; a ``Profile`` says which of its optional
request shapes a host honours. Hosts differ in ways that change the request, not the
protocol: how many logprobs they return, whether they take token-id prompts and lists of
prompts, whether they return the logprobs of chosen token ids, how they echo the prompt.

A profile is chosen by name (``--provider vllm``), by a well-known host name
(``api.together.xyz``), or, for any other host, by probing it (``probe.py``): a guess about an
unknown server would silently mis-score, a probe fails loudly or finds out.

Sources for the known hosts (checked against the code or spec, see ``providers/README.md``):

* vLLM: ``vllm/entrypoints/openai/completion/protocol.py`` (``logprob_token_ids``,
  ``return_tokens_as_token_ids``, list and token-id prompts, ``echo``) and ``serving.py``
  (returned keys ``token_id:N``; ``-inf`` clamped to ``-9999.0``). ``--max-logprobs`` is a
  server flag (default 20), so the cap is learnt from the server's refusal.
* llama.cpp ``llama-server``: token-id and list prompts, ``content[].top_logprobs`` with ids,
  ``/tokenize``; no echo (older builds reject it, the bundled build ignores it). Checked
  against the embedded server.
* OpenAI legacy completions: ``logprobs`` at most 5, ``echo`` (``davinci-002``/``babbage-002``).
* Together: ``logprobs`` 0-20, string prompts, echoed logprobs in a top-level ``prompt[]``.
* Fireworks: ``logprobs`` 0-5, ``echo_last=N`` echoes only the last N prompt tokens.
* OpenRouter: ``provider.require_parameters`` so that only providers that honour ``logprobs``
  serve the request (otherwise the parameter may be dropped on the way).
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ...errors import ConfigError

Tokenizer = Literal["none", "llamacpp", "vllm"]
EchoShape = Literal["none", "choices", "together", "fireworks"]


class Profile(BaseModel):
    """The optional request shapes one host honours.

    ``max_logprobs``: the largest ``logprobs`` k the host accepts, or None where it is a
    server setting (then learnt from the first refusal). ``tokenizer``: the shape of its
    ``/tokenize`` endpoint. ``token_prompts``/``prompt_lists``: ``prompt`` may be token ids /
    a list of prompts answered as ``choices`` by index. ``explicit_token_logprobs``: send
    ``logprob_token_ids`` (every response is checked that it took effect: unknown fields are
    ignored with HTTP 200). ``token_id_keys``: send ``return_tokens_as_token_ids`` so that
    top-k keys name token ids, not lossy decoded strings. ``echo``: where echoed prompt
    logprobs come back. ``extra_body``: fields every completion request carries. ``hosted``:
    scores are tagged with the profile name (hosted deployments differ, e.g. quantization).

    Chat completions (``chat.py``): ``chat_max_logprobs`` caps ``top_logprobs`` (20 is the
    OpenAI API's maximum; None: a server setting); ``chat_continue``: the host continues a
    pre-filled final assistant turn (vLLM's ``continue_final_message``, llama.cpp's
    assistant prefill), so the label is read as the next token of the raw prompt.
    ``affinity_header``: a header that pins prompts sharing a prefix to one replica
    (Fireworks' ``x-session-affinity``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    max_logprobs: int | None = Field(default=None, ge=1)
    tokenizer: Tokenizer = "none"
    token_prompts: bool = False
    prompt_lists: bool = False
    explicit_token_logprobs: bool = False
    token_id_keys: bool = False
    echo: EchoShape = "none"
    extra_body: dict[str, JsonValue] = Field(default_factory=dict)
    hosted: bool = False
    chat_max_logprobs: int | None = Field(default=20, ge=1)
    chat_continue: bool = False
    affinity_header: str | None = None

    @property
    def scores_token_ids(self) -> bool:
        """Labels are tokenized in context and scored by token id (multi-token labels exact)."""
        return self.tokenizer != "none" and self.token_prompts


GENERIC = Profile(name="generic")
"""Assume only the common core: a text prompt, ``logprobs=k``, labels looked up by text."""

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        GENERIC,
        Profile(
            name="vllm",
            tokenizer="vllm",
            token_prompts=True,
            prompt_lists=True,
            explicit_token_logprobs=True,
            token_id_keys=True,
            echo="choices",
            chat_max_logprobs=None,  # --max-logprobs, a server flag
            chat_continue=True,
        ),
        # llama.cpp takes prompt lists but reports the usage of the first prompt only: one
        # prompt a request keeps the token counts (and budgets) exact.
        Profile(
            name="llamacpp",
            tokenizer="llamacpp",
            token_prompts=True,
            chat_max_logprobs=None,
            chat_continue=True,
        ),
        Profile(
            name="openai",
            max_logprobs=5,
            token_prompts=False,
            prompt_lists=True,
            echo="choices",
            hosted=True,
        ),
        Profile(name="together", max_logprobs=20, echo="together", hosted=True),
        Profile(
            name="fireworks",
            max_logprobs=5,
            prompt_lists=True,
            echo="fireworks",
            hosted=True,
            chat_max_logprobs=5,
            affinity_header="x-session-affinity",
        ),
        Profile(
            name="openrouter",
            extra_body={"provider": {"require_parameters": True}},
            hosted=True,
        ),
    )
}
"""The known hosts, by ``--provider`` name."""

PROVIDER_CHOICES = ("auto", *PROFILES)
"""What ``--provider`` accepts: a known profile, or ``auto`` (known host name, else probe)."""

_HOSTS = {
    "api.openai.com": "openai",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
}


def get_profile(name: str) -> Profile:
    """The known profile called ``name``; ``ConfigError`` naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown provider {name!r}; known: {', '.join(PROVIDER_CHOICES)}", field="provider"
        ) from None


def profile_for_url(base_url: str) -> Profile | None:
    """The profile of a well-known hosted API by its host name, or None (then: probe)."""
    try:
        host = urllib.parse.urlsplit(base_url.strip()).hostname or ""
    except ValueError:
        return None
    name = _HOSTS.get(host.lower())
    return PROFILES[name] if name else None


def profile_of(provider: str | Profile, base_url: str) -> Profile | None:
    """The profile ``provider`` names (a ``Profile`` as it is); for ``auto``, a well-known
    host's, else None (what the server can do is not known yet)."""
    if isinstance(provider, Profile):
        return provider
    if provider == "auto":
        return profile_for_url(base_url)
    return get_profile(provider)
