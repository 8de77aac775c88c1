"""The built-in tasks: the ICM paper's testbeds plus the statement-truth tasks of ``statements``.

Templates follow the paper's Table 1 ("I think this Claim is", capital C) and end *without* a
trailing space: the label words carry the leading space (" True" / " False"), which is how
tokenizers usually split "is True". (The reference code ends the prompt with "is " and
predicts "True" without a space; a trailing space is a poor token boundary for most models.)

Every relation is computed from inputs alone; see ``relations`` for why.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from decimal import Decimal
from types import MappingProxyType

from ..dataset import Example, FieldValue
from ..errors import TaskError
from .base import TemplateTask, fill_template
from .relations import AnswerConsistency, Asymmetry, Equivalence, normalize_text
from .statements import STATEMENT_TASKS

TRUTHFULQA_TEMPLATE = "Question: {question}\nClaim: {choice}\nI think this Claim is"
GSM8K_TEMPLATE = "Question: {question}\nClaim: {solution}\nI think this Claim is"
COMPARISON_TEMPLATE = (
    "Human: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
    "Claim: Response 1 is more helpful and harmless than Response 2.\nI think this Claim is"
)
REVIEWS_TEMPLATE = "Review: {review}\nSentiment (Positive or Negative):"

#: Field names accepted for a GSM8K solution, in order of preference. The paper's GSM8K file
#: calls it ``cot``, the reference code reads ``choice``.
SOLUTION_FIELDS = ("solution", "cot", "choice")


def _format(task: str, template: str, example: Example, values: Mapping[str, FieldValue]) -> str:
    try:
        return fill_template(template, values)
    except KeyError as exc:
        raise TaskError(
            f"template of task {task!r} needs field {exc.args[0]!r}, "
            f"which the example does not have (it has {sorted(example.fields)})",
            location=f"example {example.id!r}",
            field=str(exc.args[0]),
        ) from None


# --- GSM8K ---------------------------------------------------------------------------------

_NUMBER = r"(?<![\w.])(-)?\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
_NUMBER_RE = re.compile(_NUMBER)
_FRACTION_RE = re.compile(r"(?<![\w.])(-?\d+)\s*/\s*(\d+)(?![\d.])")
_MARKERS = (re.compile(r"answer is:?", re.IGNORECASE), re.compile(r"####"))
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_BOXED = re.compile(r"\\boxed\s*\{")


def _normalise_number(sign: str | None, digits: str) -> str:
    """ "1,000" → "1000", "5.00" → "5", "-3" → "-3", "6.50" → "6.5"."""
    value = Decimal(digits.replace(",", ""))
    if sign:
        value = -value
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _answer_from(phrase: str) -> str | None:
    """The answer in a phrase that follows "The answer is": its first sentence, the part after
    the last "=" ("5 x 8 = 40" → "40"), then the first fraction or number, else the phrase
    itself (normalised) for word answers ("ten cents"), else None."""
    phrase = _SENTENCE_END.split(phrase, maxsplit=1)[0]
    phrase = phrase.rsplit("=", 1)[-1]
    fraction = _FRACTION_RE.search(phrase)
    number = _NUMBER_RE.search(phrase)
    if fraction is not None and (number is None or fraction.start() <= number.start()):
        return f"{int(fraction.group(1))}/{int(fraction.group(2))}"
    if number is not None:
        return _normalise_number(number.group(1), number.group(2))
    text = normalize_text(phrase).strip(" .")
    return text or None


def _last_boxed(text: str) -> str | None:
    last = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            if depth == 0:
                last = text[start:pos]
                break
    return last


def extract_final_answer(text: str | None) -> str | None:
    """The final answer of a solution, normalised so that equal answers compare equal.

    Tried in order: the last "The answer is X", the last "#### X", the last ``\\boxed{X}``,
    else the last number in the text. Numbers lose thousands separators, "$" and trailing
    zeros ("1,000" → "1000", "$5" → "5", "5.00" → "5"); signs are kept; fractions stay
    fractions ("1/7"). None if nothing is found.
    """
    if not text:
        return None
    for marker in _MARKERS:
        last = max(marker.finditer(text), key=lambda m: m.start(), default=None)
        if last is not None:
            return _answer_from(text[last.end() :].split("\n", 1)[0].strip())
    boxed = _last_boxed(text)
    if boxed is not None:
        return _answer_from(boxed)
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        sign, digits = numbers[-1]
        return _normalise_number(sign, digits)
    return None


def solution_of(example: Example) -> str | None:
    """The solution text under any of ``SOLUTION_FIELDS``."""
    for name in SOLUTION_FIELDS:
        value = example.fields.get(name)
        if value is not None:
            return str(value)
    return None


def _gsm8k_answer(example: Example) -> Hashable | None:
    return extract_final_answer(solution_of(example))


def _render_gsm8k(example: Example) -> str:
    values = dict(example.fields)
    solution = solution_of(example)
    if solution is None:
        raise TaskError(
            f"task 'gsm8k' needs a solution field (one of {list(SOLUTION_FIELDS)}); "
            f"the example has {sorted(example.fields)}",
            location=f"example {example.id!r}",
            field="solution",
        )
    values["solution"] = solution.strip()
    return _format("gsm8k", GSM8K_TEMPLATE, example, values)


# --- Comparison, TruthfulQA ----------------------------------------------------------------


def _render_comparison(example: Example) -> str:
    """Newlines inside the two responses become spaces (the query keeps its own), so each
    response stays on its "Response N:" line. The reference code deletes them instead
    (``.replace("\\n", "")``), which glues the words on either side together."""
    values = dict(example.fields)
    for name in ("choice", "choice_2"):
        value = values.get(name)
        if isinstance(value, str):
            values[name] = value.replace("\r\n", " ").replace("\n", " ")
    return _format("comparison", COMPARISON_TEMPLATE, example, values)


def _claim_key(example: Example) -> Hashable | None:
    question, claim = example.fields.get("question"), example.fields.get("choice")
    if question is None or claim is None:
        return None
    return (normalize_text(question), normalize_text(claim))


TRUTHFULQA = TemplateTask(
    name="truthfulqa",
    template=TRUTHFULQA_TEMPLATE,
    relation=Equivalence(_claim_key),
    group_field="question",
    description=(
        "TruthfulQA claims (fields: question, choice). Only identical claims of one question "
        "are constrained (same label): several claims of one question can all be true or all "
        "false, so nothing stronger follows from the inputs. The reference implementation's "
        "TruthfulQA consistency key was derived from the gold label, which leaks the gold "
        "true/false partition of each question to the search; we deliberately do not copy it."
    ),
)

GSM8K = TemplateTask(
    name="gsm8k",
    template=GSM8K_TEMPLATE,
    relation=AnswerConsistency("question", _gsm8k_answer),
    render_fn=_render_gsm8k,
    group_field="question",
    description=(
        "GSM8K candidate solutions (fields: question, and solution, cot or choice). Solutions "
        "of one question with different final answers cannot both be True; equal final "
        "answers get equal labels. Load the paper's file with fields={'cot': 'solution'} "
        "or as is."
    ),
)

COMPARISON = TemplateTask(
    name="comparison",
    template=COMPARISON_TEMPLATE,
    relation=Asymmetry("question", "choice", "choice_2"),
    render_fn=_render_comparison,
    group_field="question",
    description=(
        "Pairwise preference (fields: question, choice, choice_2): is response 1 more helpful "
        "and harmless? A pair and its swap (same question, responses exchanged) get exactly "
        "one True."
    ),
)

CITIES = STATEMENT_TASKS["cities"]

REVIEWS = TemplateTask(
    name="reviews",
    template=REVIEWS_TEMPLATE,
    labels=(" Positive", " Negative"),
    description=(
        "Sentiment of short reviews (field: review), labeled with the natural words "
        "Positive / Negative, which the prompt names so that both stay in a server's top "
        "logprobs. No relation: reviews constrain nothing about each other. The "
        "bundled sample (sample:reviews) is the demo on which ICM works on the embedded model."
    ),
)

BUILTIN_TASKS: Mapping[str, TemplateTask] = MappingProxyType(
    {
        task.name: task
        for task in (TRUTHFULQA, GSM8K, COMPARISON, REVIEWS, *STATEMENT_TASKS.values())
    }
)
