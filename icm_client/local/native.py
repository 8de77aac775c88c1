"""A llama.cpp server compiled on this machine for its own CPU: the faster embedded engine.

The prebuilt ``xllamacpp`` wheel is a portable AVX2 build. Compiled here with
``-march=native`` (``GGML_NATIVE``), llama.cpp uses the CPU's AVX512 and AVX512-BF16
instructions, and BF16 weights (the bundled model re-encoded once, ``weights.py``) then run
on its BF16 matrix kernels: prompt processing ran ~1.7-2.5x faster on the project's 2-core
AMD EPYC (``benchmarks/local_speed.py``). It is the same llama.cpp HTTP server
(``llama-server``), so the client talks to it exactly as to the prebuilt one.

``python -m icm_client.local.native`` builds it once (10-15 CPU-minutes: measured 10.5 and
14.7, 15-20 min on 2 busy cores; it prints its progress and its own figure): ``pip download``
fetches the llama.cpp source that the ``llama-cpp-python`` sdist carries (PyPI), ``cmake``
builds only the ``llama-server`` target as one static binary, and the binary goes to
``<model cache>/bin/``. It needs ``cmake`` and a C++ compiler (Debian: ``apt-get install
cmake g++``). Without a built binary everything runs on the prebuilt engine as before;
``$ICM_LLAMA_SERVER`` names a ``llama-server`` built some other way.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import resource
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .weights import cache_dir

SERVER_ENV = "ICM_LLAMA_SERVER"
"""Environment variable naming a ``llama-server`` binary to use as the native engine."""

SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
"""The PyPI sdist whose ``vendor/llama.cpp`` is compiled (MIT, like llama.cpp)."""

BUILD_CPU_MINUTES = "10-15"
"""What the build costs, measured (10.5 and 14.7 CPU-minutes on the project's 2-core AMD EPYC;
the build prints its own figure); README.md quotes it."""

PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:")


CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",  # -march=native: this CPU's AVX512 / BF16 / VNNI kernels
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained file to copy
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else configure downloads the web UI
)


def binary_dir() -> Path:
    """Where built binaries live: ``bin/`` beside the re-encoded models."""
    return cache_dir() / "bin"


def cpu_tag() -> str:
    """A short digest of this CPU's instruction-set flags. A ``-march=native`` binary may not
    run on another CPU (a home directory shared between machines): its name carries this."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256((flags or platform.machine()).encode()).hexdigest()[:8]


def built_binary() -> Path:
    """The path the build writes for this CPU (it may not exist yet)."""
    return binary_dir() / f"llama-server-{SOURCE_VERSION}-native-{cpu_tag()}"


def native_server() -> Path | None:
    """The native ``llama-server`` to use: ``$ICM_LLAMA_SERVER``, else the built one, else None.

    The built one is run only when this user could have built it and nobody else could
    have replaced it (``untrusted``): a file planted in a shared model cache is ignored,
    with a warning, and the prebuilt engine is used.
    """
    explicit = os.environ.get(SERVER_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"${SERVER_ENV}: not an executable file: {path}")
        return path
    path = built_binary()
    if not os.path.lexists(path):
        return None
    why = untrusted(path)
    if why is not None:
        warnings.warn(
            f"not running {path}: {why}; using the prebuilt engine (rebuild it with python -m "
            f"icm_client.local.native, or name a binary with ${SERVER_ENV})",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return path if os.access(path, os.X_OK) else None


def untrusted(path: Path) -> str | None:
    """Why the built binary at ``path`` must not be run, or None: it must be a regular file
    (not a link), and it and its directory must be this user's and writable by no one else."""
    for what, target in (("its directory", path.parent), ("the file", path)):
        try:
            info = os.lstat(target)
        except OSError as exc:
            return f"{what} cannot be read ({exc.strerror})"
        if target == path and not stat.S_ISREG(info.st_mode):
            return "it is not a regular file (a link?)"
        if target != path and not stat.S_ISDIR(info.st_mode):
            return f"{what} is not a directory (a link?)"
        if info.st_uid != os.geteuid():
            return f"{what} belongs to another user (uid {info.st_uid})"
        if stat.S_IMODE(info.st_mode) & 0o022:
            return f"{what} can be written by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def missing_tools() -> list[str]:
    """The build tools this machine lacks (empty when it can build)."""
    missing = [] if shutil.which("cmake") else ["cmake"]
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++)")
    return missing


def build(jobs: int | None = None, work_dir: Path | None = None, log: bool = True) -> Path:
    """Download the llama.cpp source, compile ``llama-server`` for this CPU, install it.

    Returns the installed binary's path. Raises ``ConfigError`` with what to install when
    ``cmake`` or a compiler is missing, and with the failing step's output when a step fails.
    The binary is written under a temporary name and renamed into place: a failed or
    interrupted build never leaves a partial binary that would be picked up.
    """
    missing = missing_tools()
    if missing:
        raise ConfigError(
            f"building the native llama.cpp server needs {' and '.join(missing)} "
            "(Debian/Ubuntu: apt-get install cmake g++); without it the prebuilt engine is used"
        )
    jobs = jobs or os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="icm-llama-build-", dir=work_dir) as tmp:
        root = Path(tmp)
        started = time.monotonic()
        run_step(
            log,
            "downloading the llama.cpp source",
            [*PIP_DOWNLOAD, "--dest", str(root), f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"],
        )
        sdists = list(root.glob("*.tar.gz"))
        if len(sdists) != 1:
            raise ConfigError(f"pip download gave {len(sdists)} source archives, expected 1")
        with tarfile.open(sdists[0]) as archive:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe members
                archive.extractall(root / "src", filter="data")
            else:
                archive.extractall(root / "src")  # a pinned PyPI sdist
        sources = list((root / "src").glob("*/vendor/llama.cpp"))
        if len(sources) != 1:
            raise ConfigError(f"{sdists[0].name} holds no vendor/llama.cpp source tree")
        source = sources[0]
        build_dir = root / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        run_step(
            log,
            "configuring (cmake)",
            ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *CMAKE_OPTIONS],
        )
        run_step(
            log,
            f"compiling llama-server with {jobs} jobs ({BUILD_CPU_MINUTES} CPU-minutes)",
            ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)],
        )
        produced = build_dir / "bin" / "llama-server"
        target = built_binary()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copy2(produced, partial)
        partial.chmod(0o700)  # run only by this user, replaced by no one else (``untrusted``)
        os.replace(partial, target)
        if log:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_min = (children.ru_utime + children.ru_stime) / 60
            print(
                f"built {target} in {time.monotonic() - started:.0f} s ({cpu_min:.1f} CPU-minutes)",
                file=sys.stderr,
            )
        return target


#: cmake's progress in a build line: make's "[ 42%]" or ninja's "[42/120]".
_PROGRESS = re.compile(r"^\[\s*(?:(\d+)%|(\d+)/(\d+))\]")
#: A progress line at most this often, and at every tenth of the build.
_PROGRESS_EVERY_S = 60.0
_TAIL_LINES = 60


def build_progress(line: str) -> float | None:
    """The share of the build done that a cmake build line shows, or None."""
    found = _PROGRESS.match(line)
    if found is None:
        return None
    percent, done, total = found.groups()
    if percent is not None:
        return int(percent) / 100
    return int(done) / int(total) if int(total) else None


def run_step(log: bool, what: str, command: Sequence[str]) -> None:
    """Run one build step; with ``log``, say what it is, and for a build its progress (a line
    per tenth done, or per minute), so that a 15-minute compile is never silent. Only the
    last lines of its output are kept, for the error."""
    if log:
        print(f"icm: {what}...", file=sys.stderr, flush=True)
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    started = last_said = time.monotonic()
    said = -1  # the last tenth of the build said
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            share = build_progress(line)
            if not log or share is None:
                continue
            now, tenth = time.monotonic(), int(share * 10 + 1e-9)
            if tenth > said or now - last_said >= _PROGRESS_EVERY_S:
                elapsed = int(now - started)
                print(
                    f"icm:   {share:.0%} done ({elapsed // 60}:{elapsed % 60:02d} so far)",
                    file=sys.stderr,
                    flush=True,
                )
                said, last_said = tenth, now
    if proc.returncode != 0:
        raise ConfigError(f"{what} failed (exit {proc.returncode}):\n{''.join(tail)[-3000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m icm_client.local.native [--jobs N]``: build and install the binary."""
    parser = argparse.ArgumentParser(
        prog="python -m icm_client.local.native",
        description="Compile llama.cpp's server for this CPU (the faster embedded engine).",
    )
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs")
    args = parser.parse_args(argv)
    try:
        path = build(args.jobs)
    except ConfigError as exc:
        print(f"icm: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
