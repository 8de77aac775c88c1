"""Re-encoding a GGUF's weights (icm_client/local/weights.py), on a tiny model made here."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_gguf import QUANTIZED, make_tiny_gemma3_gguf

from icm_client.local.weights import cached_path, convert_gguf, ensure_converted

gguf = pytest.importorskip("gguf")


def _tensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        values = gguf.dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))
        out[t.name] = (t.tensor_type.name, np.asarray(values, dtype=np.float32).reshape(shape))
    return out


def _fields(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("GGUF.")}


@pytest.mark.parametrize("fmt", ["q8_0", "f16", "bf16", "q4_0"])
def test_every_quantized_matrix_is_re_encoded_and_nothing_else_changes(
    tmp_path: Path, fmt: str
) -> None:
    source = tmp_path / "tiny.gguf"
    make_tiny_gemma3_gguf(source)
    dest = tmp_path / f"tiny.{fmt}.gguf"
    convert_gguf(source, dest, fmt)  # type: ignore[arg-type]

    before, after = _tensors(source), _tensors(dest)
    assert before.keys() == after.keys()
    for name, (kind, values) in before.items():
        new_kind, new_values = after[name]
        assert new_values.shape == values.shape, name
        if name in QUANTIZED:
            assert kind == QUANTIZED[name] and new_kind == fmt.upper()
            scale = np.abs(values).max()
            tolerance = {"q8_0": 0.01, "f16": 1e-3, "bf16": 0.01, "q4_0": 0.2}[fmt]
            assert np.abs(new_values - values).max() <= tolerance * scale, name
        else:  # F32 tensors (norms, here also the embedding) are copied as they are
            assert new_kind == kind == "F32"
            np.testing.assert_array_equal(new_values, values)

    old_fields, new_fields = _fields(source), _fields(dest)
    file_type = new_fields.pop("general.file_type")
    assert file_type == int(gguf.LlamaFileType[f"MOSTLY_{fmt.upper()}"])
    old_fields.pop("general.file_type", None)
    assert new_fields == old_fields  # tokenizer and hyper-parameters untouched


def test_ensure_converted_makes_the_file_once_and_remakes_it_for_a_new_source(
    tmp_path: Path,
) -> None:
    source = tmp_path / "tiny.gguf"
    make_tiny_gemma3_gguf(source)
    cache = tmp_path / "cache"
    first = ensure_converted(source, "q8_0", cache)
    assert first.is_file() and first.parent == cache
    stamp = first.stat().st_mtime_ns
    time.sleep(0.01)
    assert ensure_converted(source, "q8_0", cache) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert list(cache.glob("*.tmp")) == []

    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed source
    second = ensure_converted(source, "q8_0", cache)
    assert second != first and second.is_file()
    assert ensure_converted(source, "f16", cache) not in (first, second)


def test_concurrent_first_uses_all_get_a_complete_file(tmp_path: Path) -> None:
    source = tmp_path / "tiny.gguf"
    make_tiny_gemma3_gguf(source)
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(ensure_converted(source, "q8_0", cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert _tensors(results[0]).keys() == _tensors(source).keys()  # a whole, readable file
    assert list(cache.glob("*.tmp")) == []


def test_a_crashed_writers_leftover_is_removed_only_when_stale(tmp_path: Path) -> None:
    source = tmp_path / "tiny.gguf"
    make_tiny_gemma3_gguf(source)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cached_path(source, "q8_0", cache)
    stale = cache / f".{target.name}.old.tmp"
    fresh = cache / f".{target.name}.live.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    ensure_converted(source, "q8_0", cache)
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still at work


def test_a_bad_source_fails_without_leaving_a_file(tmp_path: Path) -> None:
    source = tmp_path / "broken.gguf"
    source.write_bytes(b"GGUF but not really")
    cache = tmp_path / "cache"
    with pytest.raises((ValueError, OSError)):
        ensure_converted(source, "q8_0", cache)
    assert list(cache.iterdir()) == []
