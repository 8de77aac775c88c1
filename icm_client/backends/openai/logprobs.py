"""Reading label log-probabilities out of a ``/v1/completions`` response.

Servers answer ``max_tokens: 1, logprobs: k`` in one of two shapes:

* OpenAI legacy / vLLM: ``choices[i].logprobs.top_logprobs[0]`` is ``{token_text: logprob}``
  (with ``return_tokens_as_token_ids`` the keys read ``"token_id:N"``; to us they are just
  token texts). vLLM clamps ``-inf`` to ``-9999.0``.
* llama.cpp ``llama-server``: ``choices[i].logprobs.content[0].top_logprobs`` is a list of
  ``{"id", "token", "logprob", "bytes"}``. Chat completions answer in this shape everywhere
  (OpenAI and Together without ids, Fireworks with ``token_id``).

Only the FIRST generated position matters: it is the model's distribution over the token that
follows the prompt. Entries keep the token id where the server gives one (llama.cpp's ``id``,
vLLM's ``token_id:N`` keys), so that labels tokenized in context are matched by id, not by a
decoded string that two ids may share.

The exact-continuation mode reads echoed prompt logprobs instead (``echo_sequences``): OpenAI
and vLLM put them in ``choices[i].logprobs.{tokens,token_logprobs}`` (prompt tokens, then the
generated one), Together in a top-level ``prompt[i].logprobs``.

Everything here is pure (no I/O), so it is tested on recorded bodies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ...errors import CapabilityError, PermanentBackendError

TopK = list[tuple[str, float]]
"""The top-k at one position: ``(token_text, logprob)`` pairs, in the server's order."""

Entry = tuple[int | None, str, float]
"""One top-k entry: ``(token_id or None, token_text, logprob)``."""

_ID_KEY = "token_id:"

VLLM_NEG_INF = -9999.0
"""vLLM's stand-in for ``-inf``; anything at or below it is read as ``-inf``."""

TINY = 1e-12
"""Floor of the missing-label bound, so that it stays finite (and still an upper bound)."""

_NO_LOGPROBS = (
    "the server returned no logprobs; ICM needs a /v1/completions endpoint that honours "
    "'logprobs' (vLLM, llama.cpp llama-server, or a hosted legacy-completions API)"
)


def _logprob(value: object, endpoint: str | None) -> float:
    if type(value) is float and VLLM_NEG_INF < value <= 0.0:  # the common case, checked fast
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentBackendError(f"logprob is not a number: {value!r:.80}", endpoint=endpoint)
    lp = float(value)
    if math.isnan(lp) or lp > 1e-6:  # tiny positive values are rounding noise around 0
        raise PermanentBackendError(f"logprob is not a log-probability: {lp!r}", endpoint=endpoint)
    return -math.inf if lp <= VLLM_NEG_INF else min(lp, 0.0)


def _id_of_key(key: str) -> int | None:
    if key.startswith(_ID_KEY) and key[len(_ID_KEY) :].isdigit():
        return int(key[len(_ID_KEY) :])
    return None


def _top_of_choice(choice: object, endpoint: str | None) -> list[Entry]:
    if not isinstance(choice, Mapping):
        raise PermanentBackendError("a choice is not an object", endpoint=endpoint)
    logprobs = choice.get("logprobs")
    if logprobs is None:
        raise CapabilityError(_NO_LOGPROBS, endpoint=endpoint)
    if not isinstance(logprobs, Mapping):
        raise PermanentBackendError("choices[].logprobs is not an object", endpoint=endpoint)

    content = logprobs.get("content")
    if content is not None:  # llama.cpp
        if not isinstance(content, Sequence) or isinstance(content, str) or not content:
            raise CapabilityError(_NO_LOGPROBS, endpoint=endpoint)
        first = content[0]
        entries = first.get("top_logprobs") if isinstance(first, Mapping) else None
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise CapabilityError(_NO_LOGPROBS, endpoint=endpoint)
        top: list[Entry] = []
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
                raise PermanentBackendError("malformed top_logprobs entry", endpoint=endpoint)
            tid = entry.get("id", entry.get("token_id"))  # Fireworks: "token_id"
            tid = tid if isinstance(tid, int) and not isinstance(tid, bool) else None
            top.append((tid, entry["token"], _logprob(entry.get("logprob"), endpoint)))
    else:  # OpenAI legacy / vLLM
        positions = logprobs.get("top_logprobs")
        if not isinstance(positions, Sequence) or isinstance(positions, str) or not positions:
            raise CapabilityError(_NO_LOGPROBS, endpoint=endpoint)
        first = positions[0]
        if first is None:
            raise CapabilityError(_NO_LOGPROBS, endpoint=endpoint)
        if not isinstance(first, Mapping):
            raise PermanentBackendError("top_logprobs[0] is not an object", endpoint=endpoint)
        top = []
        for t, lp in first.items():  # per entry of every answer: kept lean
            key = t if type(t) is str else str(t)
            tid = _id_of_key(key) if key.startswith(_ID_KEY) else None
            fast = type(lp) is float and VLLM_NEG_INF < lp <= 0.0
            top.append((tid, key, lp if fast else _logprob(lp, endpoint)))

    if not top:
        raise CapabilityError(
            "the server returned an empty top-k; " + _NO_LOGPROBS.split("; ", 1)[1],
            endpoint=endpoint,
        )
    return top


def parse_top_logprobs(body: object, *, endpoint: str | None = None) -> list[TopK]:
    """The first-position top-k of every choice of a decoded completions body, by ``index``.

    Token texts only; ``parse_top_entries`` keeps the token ids too.
    """
    return [[(t, lp) for _, t, lp in top] for top in parse_top_entries(body, endpoint=endpoint)]


def parse_top_entries(body: object, *, endpoint: str | None = None) -> list[list[Entry]]:
    """The first-position top-k entries of every choice, by ``index``.

    Raises ``CapabilityError`` when the body is a valid completion without logprobs (the
    server cannot score), and ``PermanentBackendError`` when it is not a completion at all.
    (A body that is not JSON is the caller's business: that is a transport problem.)
    """
    return [_top_of_choice(choice, endpoint) for choice in _choices(body, endpoint)]


def _choices(body: object, endpoint: str | None, key: str = "choices") -> list[object]:
    """``body[key]``, a non-empty list, ordered by each item's ``index`` (else its position)."""
    if not isinstance(body, Mapping):
        raise PermanentBackendError("response is not a JSON object", endpoint=endpoint)
    choices = body.get(key)
    if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
        raise PermanentBackendError(f"response has no {key!r}", endpoint=endpoint)

    def index(pair: tuple[int, object]) -> int:
        i, choice = pair
        idx = choice.get("index") if isinstance(choice, Mapping) else None
        return idx if isinstance(idx, int) and not isinstance(idx, bool) else i

    return [choice for _, choice in sorted(enumerate(choices), key=index)]


def _logsumexp(values: Sequence[float]) -> float:
    hi = max(values)
    if hi == -math.inf:
        return -math.inf
    return hi + math.log(sum(math.exp(v - hi) for v in values))


def missing_label_bound(top: TopK) -> float:
    """Upper bound on the logprob of a token that is NOT in the top-k.

    A token outside the top-k is no likelier than the least likely token inside it, and no
    likelier than all the mass the top-k leaves over::

        log(min(p_min_topk, max(1 - sum(p_topk), TINY)))

    floored at ``log(TINY)`` so that it is finite (a larger bound is still a bound; ``-inf``
    would turn normalised label probabilities into NaN downstream). It is NOT the label's
    probability: callers must carry the ``bounded`` flag along with it.
    """
    probs = [math.exp(lp) for _, lp in top]
    rest = max(1.0 - sum(probs), TINY)
    return math.log(max(min(min(probs), rest), TINY))


def label_logprobs(
    top: TopK, labels: tuple[str, ...]
) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """Per-label logprobs (and which of them are only upper bounds) from one top-k.

    A label matches a token by exact text, leading space included (``" True"``). Two token
    ids that decode to the same text (vLLM keys, byte-fallback pieces) are one label word to
    us, so their probabilities add (log-sum-exp). A label absent from the top-k gets
    ``missing_label_bound(top)`` and ``bounded=True``.
    """
    by_text: dict[str, list[float]] = {}
    for tok, lp in top:
        if tok in labels:
            by_text.setdefault(tok, []).append(lp)
    bound: float | None = None
    values: list[float] = []
    flags: list[bool] = []
    for label in labels:
        found = by_text.get(label)
        if found is not None:
            values.append(_logsumexp(found))
            flags.append(False)
        else:
            if bound is None:
                bound = missing_label_bound(top)
            values.append(bound)
            flags.append(True)
    return tuple(values), tuple(flags)


def token_logprobs(
    top: Sequence[Entry], token_ids: Sequence[int], *, endpoint: str | None = None
) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """Per-token-id logprobs from one top-k (matched by id), ``bounded`` where absent.

    The top-k must carry ids (llama.cpp entries do; vLLM's keys do with
    ``return_tokens_as_token_ids``): a top-k of decoded strings cannot be matched by id.
    """
    if not top or all(tid is None for tid, _, _ in top):
        raise PermanentBackendError(
            "the server's top-k names no token ids, so labels cannot be matched by id; "
            "use --provider generic (labels matched by text)",
            endpoint=endpoint,
        )
    by_id = {tid: lp for tid, _, lp in top if tid is not None}
    bound: float | None = None
    values: list[float] = []
    flags: list[bool] = []
    for tid in token_ids:
        if tid in by_id:
            values.append(by_id[tid])
            flags.append(False)
        else:
            if bound is None:
                bound = missing_label_bound([(t, lp) for _, t, lp in top])
            values.append(bound)
            flags.append(True)
    return tuple(values), tuple(flags)


Echoed = tuple[list[str], list[float | None]]
"""Echoed tokens and their logprobs (None where the server gives none: the first token)."""


def _echoed(logprobs: object, endpoint: str | None) -> Echoed:
    if not isinstance(logprobs, Mapping):
        raise CapabilityError(
            "the server returned no echoed prompt logprobs (echo unsupported or ignored)",
            endpoint=endpoint,
        )
    tokens, lps = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if (
        not isinstance(tokens, list)
        or not isinstance(lps, list)
        or len(tokens) != len(lps)
        or not all(isinstance(t, str) for t in tokens)
    ):
        raise PermanentBackendError("malformed echoed logprobs", endpoint=endpoint)
    return list(tokens), [None if lp is None else _logprob(lp, endpoint) for lp in lps]


def echo_sequences(body: object, shape: str, *, endpoint: str | None = None) -> list[Echoed]:
    """The echoed token sequences of a completions body, one per prompt, in prompt order.

    ``shape`` is the profile's ``echo``: ``"together"`` reads ``prompt[i].logprobs`` (the prompt
    only); ``"choices"``/``"fireworks"`` read ``choices[i].logprobs``, which holds the prompt
    (or, for Fireworks' ``echo_last``, its tail) followed by the generated tokens.
    """
    key = "prompt" if shape == "together" else "choices"
    items = _choices(body, endpoint, key)
    return [
        _echoed(item.get("logprobs") if isinstance(item, Mapping) else None, endpoint)
        for item in items
    ]


def suffix_logprob(echoed: Echoed, label: str, *, endpoint: str | None = None) -> float:
    """log P(label | prompt) from echoed prompt+label tokens, found by text from the end.

    The last tokens must spell ``label`` exactly; a token that straddles the boundary (the
    label merged with the end of the prompt) cannot be split, so that is an error, never a
    guess.
    """
    tokens, lps = echoed
    text, total = "", 0.0
    for token, lp in zip(reversed(tokens), reversed(lps), strict=True):
        text = token + text
        if lp is None:  # only the first prompt token has none: the label is the whole prompt
            raise CapabilityError(
                f"no echoed logprob for a token of the label {label!r}", endpoint=endpoint
            )
        total += lp
        if len(text) >= len(label):
            break
    if text != label:
        raise CapabilityError(
            f"the echoed tokens do not end in the label {label!r} at a token boundary "
            f"(they end in {text!r}); the label merges with the end of the prompt",
            endpoint=endpoint,
        )
    return total
