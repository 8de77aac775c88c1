"""Size checks before any prompt is sent: what cannot fit the model's context fails here.

A prompt longer than the context window would be sent (and tokenized, and paid for) only to
be refused; a field of 50 MB would be sent again on every retry. When the window is known
(``--context-window``, the embedded server's, or what the server reports) the longest single
prompt and, for the exact strategy, the prompt holding every example are checked against it
first. Token counts are estimated from characters: the single prompt is refused only when
even a generous ``_MAX_CHARS_PER_TOKEN`` cannot make it fit, so that no prompt that fits is
refused; the exact search uses the usual ~4 characters per token, and says what to use
instead.
"""

from __future__ import annotations

import sys

from ..backends import OpenAICompletions
from ..backends.base import estimate_tokens
from ..backends.config import BackendConfig
from ..backends.openai.context_window import context_window
from ..dataset import Example
from ..errors import ConfigError, NoAnswerError
from ..estimate import RunPlan
from ..tasks import Task

_MAX_CHARS_PER_TOKEN = 16  # no tokenizer packs more into a token, in practice
_CHARS_PER_TOKEN = 4


async def known_window(config: BackendConfig, given: int | None) -> int | None:
    """Tokens one request may hold: as ``given`` (``--context-window``), else the embedded
    server's, else what the (first) server reports (``context_window``); None where it does
    not say."""
    if given is not None:
        return given
    if not config.base_url:
        from ..local.server import CTX_PER_SLOT

        return CTX_PER_SLOT
    probe = OpenAICompletions(  # generic: the window needs no probe of the server
        config.base_url[0],
        config.model,
        api_key_env=config.api_key_env,
        timeout=config.timeout,
        http=config.http,
    )
    try:
        try:
            await probe.prepare()  # the model name (the window is per model)
        except NoAnswerError:
            raise
        except Exception:  # the preflight reports a wrong URL, key or model properly
            return None
        return await context_window(probe)
    except NoAnswerError as exc:
        raise ConfigError(
            f"the server does not answer: {exc}; check the URL (is it the API's port?) and "
            "the server's log, or allow more time with --timeout"
        ) from None
    finally:
        await probe.aclose()


def check_prompt(task: Task, longest: Example, window: int | None, source: str) -> None:
    """``ConfigError`` if the longest single prompt cannot fit ``window`` tokens."""
    if window is None:
        return
    prompt = task.render(longest)
    if len(prompt) > window * _MAX_CHARS_PER_TOKEN:
        raise ConfigError(
            f"example {longest.id!r} of {source} renders to a prompt of {len(prompt):,} "
            f"characters, at least ~{len(prompt) // _MAX_CHARS_PER_TOKEN:,} tokens, and the "
            f"model's context holds {window:,}: shorten or drop that example (it was not sent)"
        )


def check_exact(
    task: Task, examples: tuple[Example, ...], window: int | None, strategy: str, source: str
) -> None:
    """``ConfigError`` if the exact strategy's prompt (every example) cannot fit."""
    if window is None or strategy != "exact":
        return
    chars = sum(len(task.render(ex)) + 8 for ex in examples)
    tokens = chars // _CHARS_PER_TOKEN
    if tokens > window:
        raise ConfigError(
            f"the exact strategy puts every example in each prompt: ~{tokens:,} tokens for "
            f"{len(examples):,} examples of {source}, and the model's context holds "
            f"{window:,}; use --strategy bounded, or `icm scale` for a dataset this large"
        )
    if tokens > window * 0.8:
        print(
            f"icm: warning: the exact strategy's full prompt (~{tokens:,} tokens) nearly "
            f"fills the model's context ({window:,}); --strategy bounded is safer",
            file=sys.stderr,
        )


def check_budget(
    task: Task,
    longest: Example,
    source: str,
    plan: RunPlan,
    left: tuple[int | None, int | None],
    spent: tuple[int, int],
    ledger: str,
) -> None:
    """Before any prompt is sent: ``ConfigError`` when the budget left to the run (calls,
    prompt tokens) is spent, or cannot hold the longest prompt (the preflight's, which
    would otherwise be sent and billed first); a note when it covers less than the plan
    (the run will stop early, keeping its best state)."""
    (calls_left, tokens_left), (calls_spent, tokens_spent) = left, spent
    for option, have, used, unit in (
        ("--max-calls", calls_left, calls_spent, "calls"),
        ("--max-tokens", tokens_left, tokens_spent, "prompt tokens"),
    ):
        if have == 0:
            raise ConfigError(
                f"{option}: the run has spent its budget already ({used:,} {unit}, "
                f"counted in {ledger}; budgets are totals for the run): raise it to continue"
            )
    if tokens_left is not None:
        tokens = estimate_tokens(task.render(longest))
        if tokens > tokens_left:
            name, value = max(longest.fields.items(), key=lambda kv: len(str(kv[1])))
            raise ConfigError(
                f"example {longest.id!r} of {source} renders to a prompt of about {tokens:,} "
                f"tokens (its field {name!r} holds {len(str(value)):,} characters), more than "
                f"the {tokens_left:,} prompt tokens left of --max-tokens: it was not sent; "
                "shorten or drop that example, or raise the budget"
            )
    short = [
        f"{have:,} of the ~{need:,} {unit} the plan expects"
        for have, need, unit in (
            (calls_left, plan.calls, "calls"),
            (tokens_left, plan.prompt_tokens, "prompt tokens"),
        )
        if have is not None and have < need
    ]
    if short:
        print(
            f"icm: the budget left covers {' and '.join(short)}: the run will likely stop "
            "early with its best state (unreached examples get label null); the same command "
            "with a larger budget continues it",
            file=sys.stderr,
        )
