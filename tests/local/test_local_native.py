"""The native engine: choosing it, building it, and running a ``llama-server`` binary.

The lifecycle tests run ``tests/fake_llama_server.py`` as the binary (``$ICM_LLAMA_SERVER``),
so they check our wrapper, not llama.cpp, and need no compiler. The real native server is
covered by the integration tests of ``test_local_server.py``, which use it when it is built.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from processes import HANG_S, alive, gone_soon
from tiny_gguf import make_tiny_gemma3_gguf

from icm_client.errors import ConfigError, PermanentBackendError
from icm_client.local import EmbeddedServer
from icm_client.local.native import (
    BUILD_CPU_MINUTES,
    build,
    build_progress,
    built_binary,
    main,
    native_server,
    run_step,
)
from icm_client.local.server import choose_engine

FAKE = Path(__file__).parents[1] / "fake_llama_server.py"


@pytest.fixture
def no_native(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty model cache and no ``$ICM_LLAMA_SERVER``/``$ICM_LOCAL_ENGINE``."""
    monkeypatch.setenv("ICM_MODEL_CACHE", str(tmp_path / "cache"))
    for name in ("ICM_LLAMA_SERVER", "ICM_LOCAL_ENGINE", "ICM_LOCAL_WEIGHTS", "ICM_LOCAL_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


# -- choosing the engine --------------------------------------------------------------------


def test_auto_is_prebuilt_until_a_native_binary_is_built(no_native: Path) -> None:
    assert native_server() is None
    assert choose_engine() == "prebuilt"
    assert EmbeddedServer().model_name == "gemma-3-270m-q8_0"
    binary = built_binary()
    binary.parent.mkdir(parents=True)
    other_cpu = binary.with_name(binary.name.rsplit("-", 1)[0] + "-" + "0" * 8)
    other_cpu.write_text("#!/bin/sh\n")
    other_cpu.chmod(0o755)
    assert other_cpu != binary and choose_engine() == "prebuilt", "built for another CPU"
    binary.write_text("#!/bin/sh\n")
    assert choose_engine() == "prebuilt", "a non-executable file is not a binary"
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    assert native_server() == binary
    assert choose_engine() == "native"
    server = EmbeddedServer()
    assert (server.engine, server.weights) == ("native", "bf16")
    assert server.model_name == "gemma-3-270m-bf16-native"
    assert EmbeddedServer(engine="prebuilt").model_name == "gemma-3-270m-q8_0"


def test_asking_for_the_native_engine_without_a_build_says_how_to_build(
    no_native: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"python -m icm_client\.local\.native"):
        EmbeddedServer(engine="native")
    monkeypatch.setenv("ICM_LOCAL_ENGINE", "native")
    with pytest.raises(ConfigError, match="not built"):
        EmbeddedServer()
    monkeypatch.setenv("ICM_LOCAL_ENGINE", "fast")
    with pytest.raises(ConfigError, match="ICM_LOCAL_ENGINE"):
        EmbeddedServer()
    with pytest.raises(ConfigError, match="engine"):
        EmbeddedServer(engine="gpu")


def test_a_named_binary_must_be_executable(
    no_native: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICM_LLAMA_SERVER", str(no_native / "missing"))
    with pytest.raises(ConfigError, match="ICM_LLAMA_SERVER"):
        choose_engine()
    monkeypatch.setenv("ICM_LLAMA_SERVER", str(FAKE))
    assert choose_engine() == "native"


def test_building_without_cmake_or_a_compiler_is_a_clear_error(
    no_native: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(no_native))  # nothing to run in it
    with pytest.raises(ConfigError, match=r"cmake and a C\+\+ compiler.*apt-get install"):
        build()
    assert main([]) == 2
    assert "apt-get install cmake g++" in capsys.readouterr().err
    assert not built_binary().exists()


# -- running a binary: the stand-in ---------------------------------------------------------


@pytest.fixture
def fake_native(no_native: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$ICM_LLAMA_SERVER`` = the stand-in; returns the file it writes its argv to."""
    monkeypatch.setenv("ICM_LLAMA_SERVER", str(FAKE))
    argv_file = no_native / "argv.json"
    monkeypatch.setenv("FAKE_LLAMA_ARGV", str(argv_file))
    (no_native / "model.gguf").write_bytes(b"GGUF")
    return argv_file


@pytest.mark.anyio
async def test_the_native_binary_gets_the_settings_and_stops_with_the_block(
    fake_native: Path,
) -> None:
    model = fake_native.parent / "model.gguf"
    server = EmbeddedServer(model, n_parallel=3, ctx_per_slot=1024, threads=1, cache_ram_mib=0)
    async with server:
        assert server.engine == "native" and server.model_name == "model-native"
        response = httpx2.get(server.root_url + "/health", timeout=HANG_S)
        assert response.status_code == 200
        seen = json.loads(fake_native.read_text())
        argv, binary_pid = seen["argv"], seen["pid"]
        wrapper_pid = server.pid
        assert wrapper_pid is not None and alive(binary_pid)
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    assert argv[argv.index("--model") + 1] == str(model)
    assert argv[argv.index("--ctx-size") + 1] == "3072"  # total over the 3 slots
    assert argv[argv.index("--parallel") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "1"
    # more HTTP threads than the client's connections: llama.cpp's default (slots + 4) made
    # requests beyond it wait for a kept-alive connection's thread
    assert int(argv[argv.index("--threads-http") + 1]) >= 64
    assert argv[argv.index("--alias") + 1] == "model-native"
    assert options["--host"] == "127.0.0.1"
    assert "--swa-full" in argv and "--cache-prompt" in argv
    assert gone_soon(binary_pid), "the native server outlived its block"
    assert not alive(wrapper_pid)


@pytest.mark.anyio
async def test_a_native_binary_that_fails_to_start_reports_its_log(
    fake_native: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_FAIL", "1")
    server = EmbeddedServer(fake_native.parent / "model.gguf", startup_timeout=HANG_S)
    with pytest.raises(PermanentBackendError, match="failed to load model"):
        async with server:
            pass
    assert server.pid is None


def test_the_native_binary_dies_with_a_killed_wrapper(fake_native: Path) -> None:
    """SIGKILL of the wrapper (no cleanup runs) still takes llama-server down."""
    ready = fake_native.parent / "ready"
    command = [sys.executable, "-m", "icm_client.local._serve", "--model", "m.gguf"]
    wrapper = subprocess.Popen(
        [*command, "--native", str(FAKE), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + HANG_S
        while not ready.exists():
            assert time.monotonic() < deadline and wrapper.poll() is None
            time.sleep(0.05)
        binary_pid = json.loads(fake_native.read_text())["pid"]
        assert alive(binary_pid)
    finally:
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait()
    assert gone_soon(binary_pid)


@pytest.mark.anyio
async def test_cancelling_the_block_stops_the_native_binary(fake_native: Path) -> None:
    server = EmbeddedServer(fake_native.parent / "model.gguf")
    with anyio.move_on_after(60) as scope:
        async with server:
            pid = int(json.loads(fake_native.read_text())["pid"])
            scope.cancel()
            await anyio.sleep(60)
    assert scope.cancelled_caught
    assert gone_soon(pid)


# -- no silent waits ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_line_comes_before_the_weights_re_encoding_and_the_servers_start(
    fake_native: Path,
) -> None:
    model = fake_native.parent / "tiny.gguf"
    make_tiny_gemma3_gguf(model)
    said: list[str] = []
    async with EmbeddedServer(model, weights="q8_0", announce=said.append):
        assert len(said) == 2
    assert said[0].startswith("re-encoding the model's weights as Q8_0, once")
    assert said[1] == "starting the embedded model (tiny-q8_0-native, native build)"
    said.clear()
    async with EmbeddedServer(model, weights="q8_0", announce=said.append):
        pass
    assert said == ["starting the embedded model (tiny-q8_0-native, native build)"]  # cached


def test_a_build_step_reports_cmakes_progress_and_keeps_the_tail_of_a_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [f"[{k:3d}%] Building CXX object src/f{k}.cpp.o" for k in range(0, 101, 5)]
    script = "import sys\nfor line in sys.argv[1:]: print(line, flush=True)"
    run_step(True, "compiling", [sys.executable, "-c", script, "configure noise", *lines])
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("icm:   ")]
    assert err[0] == "icm: compiling..."
    assert [p.split()[1] for p in progress] == [f"{k}%" for k in range(0, 101, 10)]
    assert build_progress("[12/120] Linking CXX executable") == pytest.approx(0.1)
    assert build_progress("-- Configuring done") is None
    failing = "import sys\nprint('[ 50%] cc f.c'); print('error: boom'); sys.exit(3)"
    with pytest.raises(ConfigError, match=r"(?s)compiling failed \(exit 3\).*error: boom"):
        run_step(False, "compiling", [sys.executable, "-c", failing])
    assert capsys.readouterr().err == ""  # log=False: silent


def test_the_readme_quotes_the_builds_measured_cost() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("python -m icm_client.local.native"))
    assert f"{BUILD_CPU_MINUTES} CPU-minutes" in line and "~11" not in readme
