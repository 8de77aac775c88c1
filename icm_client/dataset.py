"""Examples, datasets and gold labels.

The search must never see gold labels. They are therefore not a field of ``Example`` at all:
``load_dataset`` splits them off into ``GoldLabels``, which only evaluation code accepts.
Everything the search and the scorers receive is typed ``Sequence[Example]``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError, DataError

#: JSON values a field may hold. Templates render them with ``str()``.
FieldValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Example:
    """One unlabeled input: a stable id and its input fields (never a gold label)."""

    id: str
    fields: Mapping[str, FieldValue]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, slots=True)
class GoldLabels:
    """Evaluation-only labels, keyed by example id. Values are label words without spaces."""

    by_id: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", MappingProxyType(dict(self.by_id)))

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, example_id: str) -> str | None:
        return self.by_id.get(example_id)


@dataclass(frozen=True, slots=True)
class Dataset:
    """What a file holds: the examples for the search, the gold labels for evaluation."""

    examples: tuple[Example, ...]
    gold: GoldLabels | None = None
    source: str = "<memory>"
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Where each example's record is in the file (``path:LINE``, by id): an error about an
    #: example names its line, which a content id does not tell.
    locations: Mapping[str, str] = field(default_factory=dict)

    def where(self, example: Example) -> str:
        """``path:LINE (example 'ID')``, or ``example 'ID'`` for examples not from a file."""
        loc = self.locations.get(example.id)
        return f"{loc} (example {example.id!r})" if loc else f"example {example.id!r}"

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)


def examples_of(examples: Sequence[Example]) -> tuple[Example, ...]:
    """Freeze a sequence of examples, refusing anything that is not an ``Example``.

    The public search API calls this so that passing a ``Dataset`` by mistake, or records
    that still carry a label, fails loudly instead of leaking gold into the search.
    """
    if isinstance(examples, Dataset):
        raise TypeError(
            "pass dataset.examples, not the Dataset: gold labels must not reach the search"
        )
    out = tuple(examples)
    for ex in out:
        if not isinstance(ex, Example):
            raise TypeError(f"expected Example, got {type(ex).__name__}")
    return out


# ---------------------------------------------------------------------------------------------
# Loading files
# ---------------------------------------------------------------------------------------------

_TRUE_WORDS = frozenset({"1", "true", "yes"})
_FALSE_WORDS = frozenset({"0", "false", "no"})
_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}


SAMPLES = Path(__file__).parent / "samples"


def resolve_input(spec: str | os.PathLike[str]) -> Path:
    """A path, or for ``sample:NAME`` the bundled sample's file (``cities``, ``truthfulqa``)."""
    text = os.fspath(spec)
    if not text.startswith("sample:"):
        return Path(text)
    name = text.removeprefix("sample:")
    path = SAMPLES / f"{name}_sample.jsonl"
    if not path.exists():
        known = sorted(p.name.removesuffix("_sample.jsonl") for p in SAMPLES.glob("*_sample.jsonl"))
        raise ConfigError(f"no bundled sample {name!r}; known: {', '.join(known)}")
    return path


def load_dataset(
    path: str | os.PathLike[str],
    *,
    fields: Mapping[str, str] | None = None,
    id_field: str | None = "id",
    label_field: str | None = "label",
    limit: int | None = None,
    drop: Collection[str] = (),
) -> Dataset:
    """Read a JSON (list of records), JSONL or CSV file into examples and gold labels.

    The format comes from the extension (``.json``, ``.jsonl``, ``.csv``); any other
    extension is sniffed from the content (``[`` JSON, ``{`` JSONL, else CSV).
    ``"sample:cities"`` and ``"sample:truthfulqa"`` name the bundled samples.

    * ``fields`` renames file fields to the names the task's template uses
      (``{"cot": "solution"}``); other fields keep their names. ``id_field``, ``label_field``
      and ``drop`` name fields as they are in the file.
    * ``drop`` discards file fields outright, e.g. the nested human votes ``candidate_label``
      of the paper's Alpaca file (they are not a valid field value, and they leak gold).
    * The id is ``str(record[id_field])`` when present, else a content id: the first 12 hex
      digits of the SHA-256 of the canonical JSON of the input fields, with ``-2``, ``-3`` for
      exact duplicates. Content ids do not depend on gold labels or on record order (except
      for the duplicate suffixes), so results can be joined back to the file later.
    * The gold label is split off into ``GoldLabels`` and never appears in ``Example.fields``.

    Every problem raises ``DataError`` naming the file and line (``path:LINE``; JSON arrays:
    ``path: record N``, 1-based) and the field. No record is dropped silently.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}", location=str(path))
    path = resolve_input(path)
    records = _read_records(path, limit)
    return _build_dataset(str(path), records, fields or {}, id_field, label_field, frozenset(drop))


#: (location, record) as read from the file, before any validation of the values.
_Raw = tuple[str, object]


def _read_records(path: Path, limit: int | None) -> list[_Raw]:
    if not path.exists():
        raise DataError("file not found", location=str(path))
    if path.is_dir():
        raise DataError("is a directory, not a dataset file", location=str(path))
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt == "jsonl":  # streamed: --limit reads only what it needs
        return _read_jsonl(path, limit)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8: invalid byte 0x{data[exc.start]:02x} at byte offset {exc.start}",
            location=f"{path}:{line}",
        ) from None
    stripped = text.lstrip()
    if not stripped:
        raise DataError("file is empty", location=str(path))
    if fmt is None:
        fmt = "json" if stripped[0] == "[" else "jsonl" if stripped[0] == "{" else "csv"
    if fmt == "json":
        records = _read_json(path, text, stripped)
    elif fmt == "jsonl":
        records = _read_jsonl(path, limit)
    else:
        records = _read_csv(path, text, limit)
    if not records:
        raise DataError("file holds no records", location=str(path))
    return records[:limit] if limit is not None else records


def _loads(text: str, where: str, *, add_line: bool = False) -> object:
    """``json.loads``, with every way it can fail as a ``DataError`` at ``where`` (plus the
    line of a syntax error with ``add_line``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            location=f"{where}:{exc.lineno}" if add_line else where,
        ) from None
    except RecursionError:
        raise DataError("JSON nests too deeply to read", location=where) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DataError(f"invalid JSON: {exc}", location=where) from None


def _read_json(path: Path, text: str, stripped: str) -> list[_Raw]:
    if stripped[0] != "[":
        raise DataError(
            "a .json file must hold a list of records (one record per line is JSON Lines: "
            "name the file .jsonl)",
            location=str(path),
        )
    value = _loads(text, str(path), add_line=True)
    if not isinstance(value, list):
        raise DataError("a .json file must hold a list of records", location=str(path))
    return [(f"{path}: record {n}", rec) for n, rec in enumerate(value, start=1)]


def _read_jsonl(path: Path, limit: int | None) -> list[_Raw]:
    """One record per line, lines ended by "\\n" only (U+2028 and friends may sit inside a
    JSON string), read as a stream: ``limit`` records are all that is read."""
    out: list[_Raw] = []
    offset, blank = 0, True
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, offset = raw[3:], 3
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise DataError(
                    f"not UTF-8: invalid byte 0x{raw[exc.start]:02x} at byte offset {at}",
                    location=f"{path}:{lineno}",
                ) from None
            offset += len(raw)
            if not line.strip():
                continue
            blank = False
            out.append((f"{path}:{lineno}", _loads(line, f"{path}:{lineno}")))
            if limit is not None and len(out) >= limit:
                break
    if blank:
        raise DataError("file is empty", location=str(path))
    return out


def _read_csv(path: Path, text: str, limit: int | None) -> list[_Raw]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"invalid CSV header: {exc}", location=f"{path}:1") from None
    if len(set(header)) != len(header) or not all(h.strip() for h in header):
        raise DataError(
            f"CSV header has empty or repeated column names: {header}", location=f"{path}:1"
        )
    out: list[_Raw] = []
    start = reader.line_num + 1
    while limit is None or len(out) < limit:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"invalid CSV: {exc}", location=f"{path}:{start}") from None
        if row:
            if len(row) != len(header):
                raise DataError(
                    f"row has {len(row)} cells, the header has {len(header)} columns",
                    location=f"{path}:{start}",
                )
            out.append((f"{path}:{start}", dict(zip(header, row, strict=True))))
        start = reader.line_num + 1
    return out


def _build_dataset(
    source: str,
    records: list[_Raw],
    rename: Mapping[str, str],
    id_field: str | None,
    label_field: str | None,
    drop: frozenset[str],
) -> Dataset:
    examples: list[Example] = []
    gold: dict[str, str] = {}
    locations: dict[str, str] = {}
    explicit: dict[str, str] = {}  # id -> location of the record that declared it
    content_counts: dict[str, int] = {}
    seen_fields: set[str] = set()
    for loc, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"record is a JSON {_json_type(rec)}, not an object", location=loc)
        _check_text(rec, loc)
        seen_fields.update(rec)
        ex_fields: dict[str, FieldValue] = {}
        for key, value in rec.items():
            if key in drop or key in (id_field, label_field):
                continue
            name = rename.get(key, key)
            if not isinstance(value, str | int | float | bool | None):
                raise DataError(
                    f"value is a JSON {_json_type(value)}; fields must be strings, numbers, "
                    "booleans or null (drop the field with drop=[...] if the task does not use it)",
                    location=loc,
                    field=key,
                )
            if name in ex_fields:
                raise DataError(
                    f"renaming gives two fields named {name!r}", location=loc, field=key
                )
            ex_fields[name] = value
        raw_id = rec.get(id_field) if id_field is not None else None
        if raw_id is not None:
            if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
                raise DataError(
                    f"id must be a string or an integer, got {raw_id!r}",
                    location=loc,
                    field=id_field,
                )
            ex_id = str(raw_id)
            if ex_id in explicit:
                raise DataError(
                    f"duplicate id {ex_id!r}, first used at {explicit[ex_id]}",
                    location=loc,
                    field=id_field,
                )
            explicit[ex_id] = loc
        else:
            digest = hashlib.sha256(_canonical(ex_fields).encode()).hexdigest()[:12]
            n = content_counts[digest] = content_counts.get(digest, 0) + 1
            ex_id = digest if n == 1 else f"{digest}-{n}"
        examples.append(Example(ex_id, ex_fields))
        locations[ex_id] = loc
        if label_field is not None and rec.get(label_field) is not None:
            gold[ex_id] = _normalise_label(rec[label_field], loc, label_field)
    missing = sorted(set(rename) - seen_fields)
    if missing:
        raise DataError(
            f"fields to rename {missing} are in no record (the file has {sorted(seen_fields)})",
            location=source,
        )
    _check_unique_ids(examples, explicit, source)
    gold_labels = GoldLabels(gold) if gold else None
    return Dataset(tuple(examples), gold_labels, source=source, locations=locations)


def _check_text(rec: dict[str, object], loc: str) -> None:
    """A lone surrogate (``"\\ud800"`` is valid JSON) is no text: it could be neither sent
    to a server nor written back as UTF-8, so it is refused here, where it can be named."""
    for key, value in rec.items():
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise DataError(
                        f"{'name' if text is key else 'value'} holds a lone surrogate "
                        f"({ascii(text[exc.start])[1:-1]}) at character {exc.start + 1}: not "
                        "text that can be sent or written as UTF-8",
                        location=loc,
                        field=ascii(key)[1:-1] if text is key else key,
                    ) from None


def _check_unique_ids(
    examples: Sequence[Example], explicit: Mapping[str, str], source: str
) -> None:
    """A content id can collide with an explicit id of another record: refuse, never overwrite."""
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            where = explicit.get(ex.id, "another record")
            raise DataError(
                f"content id {ex.id!r} equals the explicit id at {where}; give every record an id",
                location=source,
            )
        seen.add(ex.id)


def _normalise_label(value: object, loc: str, label_field: str) -> str:
    """Gold labels become label words without spaces: booleans and 0/1 become True/False."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float) and value in (0, 1):
        return "True" if value == 1 else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        word = value.strip()
        if word.lower() in _TRUE_WORDS:
            return "True"
        if word.lower() in _FALSE_WORDS:
            return "False"
        if word and not any(c.isspace() for c in word):
            return word
        raise DataError(
            f"gold label {value!r} is not a single label word", location=loc, field=label_field
        )
    raise DataError(
        f"gold label of unsupported type {_json_type(value)}: {value!r} "
        "(use a boolean, 0/1, or a label word)",
        location=loc,
        field=label_field,
    )


def _canonical(fields: Mapping[str, FieldValue]) -> str:
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )
