"""Make a GSM8K-verification-shaped dataset of any size, entirely by this script.

    python examples/word_problems.py --n 100000 --out problems.jsonl

The shape is that of the ICM paper's GSM8K file: each question has 4 worked solutions
(``cot``) that end in "The answer is N."; about half are right. Wrong ones carry the slips
a model makes: an arithmetic error in one step (carried on to the end), the wrong operation,
a step skipped, an off-by-one. Two solutions of one question with different final answers
cannot both be right: the built-in ``gsm8k`` task's relation binds, as on the real data.

Questions are two- or three-step word problems made from templates with random names,
items and numbers (seeded: the same ``--seed`` gives the same file). Each record:
``{"id", "question", "cot", "label"}`` (``label`` is the gold truth, for evaluation).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

NAMES = (
    "Ava", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonah",
    "Kemi", "Liam", "Mara", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
ITEMS = (
    ("apples", "basket"), ("pencils", "box"), ("stickers", "sheet"), ("cookies", "tray"),
    ("marbles", "bag"), ("books", "shelf"), ("eggs", "carton"), ("stamps", "album"),
    ("seeds", "packet"), ("cards", "deck"), ("bottles", "crate"), ("beads", "jar"),
)  # fmt: skip

Step = tuple[str, int]  # a sentence of the solution and the running value after it


def _multiply_then_sell(rng: random.Random) -> tuple[str, list[Step], list[list[Step]]]:
    name, (item, holder) = rng.choice(NAMES), rng.choice(ITEMS)
    n, per, sold = rng.randint(3, 12), rng.randint(4, 25), rng.randint(2, 30)
    total = n * per
    question = (
        f"{name} has {n} {holder}s of {item}. Each {holder} holds {per} {item}. "
        f"{name} gives away {sold} {item}. How many {item} does {name} have left?"
    )
    right = [(f"{n} x {per} = {total} {item}.", total), (f"{total} - {sold} = {total - sold}.", total - sold)]  # fmt: skip
    wrong = [
        [(f"{n} + {per} = {n + per} {item}.", n + per), (f"{n + per} - {sold} = {n + per - sold}.", n + per - sold)],
        [(f"{n} x {per} = {total} {item}.", total), (f"{total} + {sold} = {total + sold}.", total + sold)],
        [(f"{n} x {per} = {total + 10} {item}.", total + 10), (f"{total + 10} - {sold} = {total + 10 - sold}.", total + 10 - sold)],
    ]  # fmt: skip
    return question, right, wrong


def _share_after_buying(rng: random.Random) -> tuple[str, list[Step], list[list[Step]]]:
    name, (item, _) = rng.choice(NAMES), rng.choice(ITEMS)
    friends = rng.randint(2, 6)
    each = rng.randint(3, 15)
    have = rng.randint(5, 40)
    bought = friends * each - have + rng.randint(1, 4) * friends
    total = have + bought
    while total % friends:
        bought += 1
        total += 1
    question = (
        f"{name} has {have} {item} and buys {bought} more. {name} shares them equally among "
        f"{friends} friends. How many {item} does each friend get?"
    )
    right = [
        (f"{have} + {bought} = {total} {item}.", total),
        (f"{total} / {friends} = {total // friends}.", total // friends),
    ]
    wrong = [
        [(f"{have} + {bought} = {total} {item}.", total), (f"{total} / {friends + 1} = {total // (friends + 1)}.", total // (friends + 1))],
        [(f"{bought} / {friends} = {bought // friends}.", bought // friends)],
        [(f"{have} + {bought} = {total - 1} {item}.", total - 1), (f"{total - 1} / {friends} = {(total - 1) // friends}.", (total - 1) // friends)],
    ]  # fmt: skip
    return question, right, wrong


def _three_steps(rng: random.Random) -> tuple[str, list[Step], list[list[Step]]]:
    name = rng.choice(NAMES)
    days, per_day, price, spent = rng.randint(3, 9), rng.randint(2, 12), rng.randint(2, 9), 0
    made = days * per_day
    earned = made * price
    spent = rng.randint(1, earned // 2)
    question = (
        f"{name} bakes {per_day} cakes a day for {days} days and sells every cake for "
        f"${price}. {name} spends ${spent} on flour. How many dollars does {name} keep?"
    )
    right = [
        (f"{days} x {per_day} = {made} cakes.", made),
        (f"{made} x {price} = ${earned}.", earned),
        (f"{earned} - {spent} = {earned - spent}.", earned - spent),
    ]
    wrong = [
        [(f"{days} x {per_day} = {made} cakes.", made), (f"{made} x {price} = ${earned}.", earned)],
        [(f"{days} + {per_day} = {days + per_day} cakes.", days + per_day), (f"{days + per_day} x {price} = ${(days + per_day) * price}.", (days + per_day) * price), (f"{(days + per_day) * price} - {spent} = {(days + per_day) * price - spent}.", (days + per_day) * price - spent)],
        [(f"{days} x {per_day} = {made} cakes.", made), (f"{made} x {price} = ${earned + price}.", earned + price), (f"{earned + price} - {spent} = {earned + price - spent}.", earned + price - spent)],
    ]  # fmt: skip
    return question, right, wrong


TEMPLATES: tuple[Callable[[random.Random], tuple[str, list[Step], list[list[Step]]]], ...] = (
    _multiply_then_sell,
    _share_after_buying,
    _three_steps,
)


OPENINGS = ("", "First, ", "Step by step: ", "We compute: ", "Let's see. ")


def _text(steps: list[Step], rng: random.Random) -> str:
    return rng.choice(OPENINGS) + " ".join(s for s, _ in steps) + f" The answer is {steps[-1][1]}."


def problems(n: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """``n`` records, 4 solutions per question (the last question may have fewer)."""
    rng = random.Random(f"icm-word-problems:{seed}")
    made = 0
    q = 0
    while made < n:
        question, right, wrong = rng.choice(TEMPLATES)(rng)
        answer = right[-1][1]
        wrong = [w for w in wrong if w[-1][1] != answer]  # a slip that lands on the answer
        right_count = rng.choice((1, 2, 2, 3)) if wrong else 4
        sols = [(_text(right, rng), True) for _ in range(right_count)]
        sols += [(_text(rng.choice(wrong), rng), False) for _ in range(4 - right_count)]
        rng.shuffle(sols)
        for k, (cot, label) in enumerate(sols):
            if made == n:
                break
            yield {"id": f"p{q}-{k}", "question": question, "cot": cot, "label": label}
            made += 1
        q += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="records to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSONL file (default: standard output)")
    args = p.parse_args()
    if args.n < 1:
        p.error("--n must be at least 1")
    out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        for record in problems(args.n, args.seed):
            out.write(json.dumps(record) + "\n")
    finally:
        if args.out:
            out.close()


if __name__ == "__main__":
    main()
