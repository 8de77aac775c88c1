"""Re-encode a GGUF model's weights once in a faster format, kept in the user cache.

Why: ICM's work on a CPU is prompt processing (long prompts, one generated token), which is
bound by llama.cpp's matrix-multiply kernels. The bundled Gemma 3 270M is a Q4_K_M *mix*:
Q4_K, Q6_K, Q8_0 and Q5_0 matrices. The prebuilt ``xllamacpp`` wheel is an AVX2 build, and
its fast "repacked" AVX2 GEMM paths cover Q4_0, Q4_K and Q8_0 but not Q5_0 (81 of the 127
matrices) or Q6_K; those take the slow vec-dot path. Re-encoding every matrix as Q8_0 puts all
of them on the fast path. (16-bit formats are slower with this build: it has no AVX512-BF16
kernels, so BF16 is emulated, and F16 converts on the fly; measured in
``benchmarks/local_speed.py``.)

Q8_0 keeps the shipped weights to within 1/254 of each 32-value block's largest value: the
scores move far less than they do with llama.cpp's batch composition (see
benchmarks/README.md, "Embedded engine speed"). Q4_0 is faster still but re-quantizes at 4
bits, a different model in effect.

The file goes to ``$ICM_MODEL_CACHE``, else ``$XDG_CACHE_HOME/icm-client/models`` (or
``~/.cache/icm-client/models``; not the score cache's directory), named after the source
file's identity (path, size, mtime) and the format version, so a changed source makes a new
file. It is written to a unique temporary
name, flushed to disk and renamed into place: a reader never sees a partial file, two
processes doing it at once both succeed (the last rename wins, both files are complete), and
a crash leaves at most a temporary file that the next call removes once it is stale.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

Dtype = Literal["f16", "bf16", "q8_0", "q4_0"]
FORMAT_VERSION = 1
"""Bump when the output of ``dequantize_gguf`` changes, so cached files are remade."""

CACHE_ENV = "ICM_MODEL_CACHE"
_STALE_TMP_S = 3600.0
_CHUNK_ROWS = 16384


def cache_dir() -> Path:
    """``$ICM_MODEL_CACHE``, else ``$XDG_CACHE_HOME/icm-client/models`` (``~/.cache/...``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "icm-client" / "models"


def cached_path(source: Path, dtype: Dtype, directory: Path | None = None) -> Path:
    """Where the ``dtype`` copy of ``source`` lives: a name that changes with the source file."""
    stat = source.stat()
    key = f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{dtype}:{FORMAT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"{source.stem}.{dtype}.{digest}.gguf"


def ensure_converted(
    source: str | os.PathLike[str],
    dtype: Dtype = "q8_0",
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    """The path of a ``dtype`` copy of the GGUF file ``source``, made on first use.

    Blocking (~20-40 s for the bundled model, once): call it from a worker thread in async
    code. Raises ``ConfigError`` if ``gguf`` is missing or the disk is full.
    """
    src = Path(source)
    out_dir = Path(directory) if directory is not None else None
    target = cached_path(src, dtype, out_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        convert_gguf(src, tmp, dtype)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"cannot write the {dtype} model copy {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _remove_stale_tmp(directory: Path) -> None:
    """Temporary files of crashed writers, old enough that no live writer owns them."""
    now = time.time()
    for leftover in directory.glob(".*.gguf.*.tmp"):
        try:
            if now - leftover.stat().st_mtime > _STALE_TMP_S:
                leftover.unlink()
        except OSError:
            pass


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ConfigError(
            "re-encoding the model needs the 'gguf' package: pip install 'icm-client[local]'"
        ) from None
    return gguf


def convert_gguf(source: Path, dest: Path, dtype: Dtype = "q8_0") -> None:
    """Write ``dest``: ``source`` with every quantized weight matrix stored as ``dtype``.

    All metadata (tokenizer, hyper-parameters) is copied unchanged except the file type.
    Tensors already in F32 (norms) stay F32; F16/BF16 tensors are copied as they are.
    """
    gguf = _import_gguf()
    import numpy as np

    qt = gguf.GGMLQuantizationType
    out_type = qt[dtype.upper()]
    file_type = gguf.LlamaFileType[f"MOSTLY_{dtype.upper()}"]
    reader = gguf.GGUFReader(source)
    arch_field = reader.fields[gguf.Keys.General.ARCHITECTURE]
    arch = arch_field.contents()
    writer = gguf.GGUFWriter(dest, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_key_value(field.name, int(file_type), gguf.GGUFValueType.UINT32)
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    if gguf.Keys.General.FILE_TYPE not in reader.fields:
        writer.add_key_value(gguf.Keys.General.FILE_TYPE, int(file_type), gguf.GGUFValueType.UINT32)

    plans: list[tuple[Any, tuple[int, ...] | None]] = []  # (tensor, shape if re-encoded)
    for tensor in reader.tensors:
        kind = tensor.tensor_type
        if kind in (qt.F32, qt.F16, qt.BF16):
            plans.append((tensor, None))
            writer.add_tensor_info(
                tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, kind
            )
            continue
        # Logical shape (rows, cols) in numpy order: GGUF lists dims innermost first.
        shape = tuple(int(d) for d in reversed(tensor.shape))
        raw_shape = gguf.quant_shape_to_byte_shape(shape, out_type)
        plans.append((tensor, shape))
        writer.add_tensor_info(
            tensor.name, raw_shape, np.dtype(np.uint8), int(np.prod(raw_shape)), out_type
        )

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor, logical in plans:
        data = tensor.data
        if logical is not None:
            data = _convert_rows(gguf, data, tensor.tensor_type, out_type, logical)
        writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    writer.close()


def _convert_rows(gguf: Any, data: Any, kind: Any, out_type: Any, shape: tuple[int, ...]) -> Any:
    """Dequantize ``data`` (raw blocks, rows first) and re-encode as 16-bit, in row chunks.

    Chunked so that the 262k-row embedding matrix never exists as one float32 array.
    """
    import numpy as np

    rows = data.reshape(-1, data.shape[-1])
    n_rows = rows.shape[0]
    row_bytes = gguf.quant_shape_to_byte_shape((shape[-1],), out_type)[-1]
    out = np.empty((n_rows, row_bytes), dtype=np.uint8)
    for start in range(0, n_rows, _CHUNK_ROWS):
        block = gguf.dequantize(rows[start : start + _CHUNK_ROWS], kind)
        if out_type == gguf.GGMLQuantizationType.F16:
            encoded = block.astype(np.float16).view(np.uint8)
        else:
            encoded = gguf.quantize(block.astype(np.float32), out_type)
        out[start : start + _CHUNK_ROWS] = encoded.reshape(block.shape[0], -1)
    return out.reshape((*shape[:-1], row_bytes))
