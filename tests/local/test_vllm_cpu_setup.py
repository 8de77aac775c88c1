"""providers/vllm_cpu_setup.py: the server command and environment it builds (no vLLM run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "providers" / "vllm_cpu_setup.py"


def _setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_cpu_setup", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vllm_cpu_setup", module)
    spec.loader.exec_module(module)
    return module


def test_server_runs_on_loopback_with_the_flags_icm_needs(tmp_path: Path) -> None:
    setup = _setup()
    python = tmp_path / "venv" / "bin" / "python"
    command = setup.server_command(python, tmp_path / "model", 8123, 4096)
    assert command[:3] == [str(python), "-m", "vllm.entrypoints.openai.api_server"]
    flags = " ".join(command)
    for flag in (
        "--host 127.0.0.1",
        "--port 8123",
        "--max-model-len 4096",
        "--max-logprobs 20",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        f"--model {tmp_path / 'model'}",
    ):
        assert flag in flags
    env = setup.server_env(4)
    assert env["VLLM_HOST_IP"] == "127.0.0.1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert env["HF_HUB_OFFLINE"] == "1"


def test_the_converter_it_runs_is_the_tested_module() -> None:
    setup = _setup()
    assert setup.CONVERTER.is_file()
    assert setup.CONVERTER.name == "hf_convert.py" and setup.CONVERTER.parent.name == "local"
    assert setup.CUDA_EXTRAS == ("torchvision", "torchaudio", "torchcodec")
