"""Write ``reviews_sample.jsonl``: short product reviews, half positive, half negative.

Every review is built by this file from its own word lists (no third-party text): a thing
that was bought ("headphones"), one of its aspects ("the sound") with a verdict of the
review's polarity ("is superb"), and a closing sentence of the same polarity ("I love
them."). The sentiment is therefore plain in the words, which a 270M base model can read
and, with a few demonstrations, learn to put a label on: the demo task on which ICM works
on the embedded model (``icm label sample:reviews --task reviews``).

Deterministic: a seeded ``random.Random`` draws distinct (item, aspect, verdict, closing)
combinations, exactly ``n // 2`` per polarity, and shuffles the rows, so labels do not follow
the row order; ids are sequential and say nothing about the label. No two texts are equal.

Run: ``python icm_client/samples/make_reviews.py [OUTPUT]``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 20251206
SIZE = 40

#: Item (plural, so that the verbs agree) and aspects of it.
ITEMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("headphones", ("the sound", "the fit", "the battery")),
    ("running shoes", ("the fit", "the sole", "the padding")),
    ("kitchen knives", ("the blade", "the handle", "the edge")),
    ("garden chairs", ("the frame", "the cushion", "the paint")),
    ("winter gloves", ("the lining", "the stitching", "the fit")),
    ("desk lamps", ("the light", "the switch", "the base")),
    ("coffee mugs", ("the glaze", "the handle", "the size")),
    ("phone cases", ("the grip", "the finish", "the colour")),
    ("travel bags", ("the zip", "the handle", "the fabric")),
    ("wool socks", ("the yarn", "the heel", "the colour")),
)

POSITIVE_VERDICTS = (
    "is excellent",
    "is superb",
    "is wonderful",
    "is perfect",
    "feels great",
    "works beautifully",
)
NEGATIVE_VERDICTS = (
    "is awful",
    "is terrible",
    "is dreadful",
    "is useless",
    "feels cheap",
    "broke within a week",
)
POSITIVE_CLOSINGS = (
    "I love them.",
    "Highly recommended.",
    "Worth every penny.",
    "I am very happy with them.",
)
NEGATIVE_CLOSINGS = (
    "I hate them.",
    "Avoid them.",
    "A waste of money.",
    "I am very disappointed.",
)

POLARITIES = {
    "Positive": (POSITIVE_VERDICTS, POSITIVE_CLOSINGS),
    "Negative": (NEGATIVE_VERDICTS, NEGATIVE_CLOSINGS),
}


def review(item: str, aspect: str, verdict: str, closing: str) -> str:
    """One review text: "The sound of these headphones is superb. I love them." """
    return f"{aspect[0].upper()}{aspect[1:]} of these {item} {verdict}. {closing}"


def make_rows(n: int = SIZE, seed: int = SEED) -> list[dict[str, str]]:
    """``n`` rows (fields id, review, item, label), ``n // 2`` of each polarity (``n`` even),
    every review text distinct, in a seeded random order."""
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even number of at least 2, got {n}")
    rng = random.Random(seed)
    drawn: list[tuple[str, str, str]] = []  # (review, item, label)
    for label, (verdicts, closings) in POLARITIES.items():
        combos = [
            (item, aspect, verdict, closing)
            for item, aspects in ITEMS
            for aspect in aspects
            for verdict in verdicts
            for closing in closings
        ]
        if n // 2 > len(combos):
            raise ValueError(f"n = {n} exceeds the {2 * len(combos)} distinct reviews")
        # round-robin over the items, so that both polarities cover every item evenly
        by_item = {item: [c for c in combos if c[0] == item] for item, _ in ITEMS}
        for options in by_item.values():
            rng.shuffle(options)
        order = [item for item, _ in ITEMS]
        rng.shuffle(order)
        picked: list[tuple[str, str, str, str]] = []
        while len(picked) < n // 2:
            for item in order:
                if len(picked) < n // 2 and by_item[item]:
                    picked.append(by_item[item].pop())
        drawn += [(review(*c), c[0], label) for c in picked]
    rng.shuffle(drawn)
    return [
        {"id": f"review-{k + 1:03d}", "review": text, "item": item, "label": label}
        for k, (text, item, label) in enumerate(drawn)
    ]


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("reviews_sample.jsonl")
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in make_rows()]
    out.write_text("".join(lines), encoding="utf-8")
    print(f"wrote {len(lines)} rows to {out}")


if __name__ == "__main__":
    main(sys.argv)
