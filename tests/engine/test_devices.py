"""GPU offload arithmetic and the device list, on this CPU build and as a GPU build would
count them."""

from pathlib import Path

import llama_cpp
import pytest

from shard.engine import devices
from shard.engine.devices import GpuOffload, backend_of, offloaded_layers, requested_layers
from shard.engine.types import Device


def test_a_cpu_build_offloads_nothing_whatever_is_asked() -> None:
    assert not devices.gpu_backend()  # this machine's llama-cpp-python wheel
    assert requested_layers(GpuOffload()) == 0
    assert requested_layers(GpuOffload(layers=7)) == 7  # passed on; llama.cpp ignores it
    assert offloaded_layers(7, model_layers=18) == 0
    found = devices.devices()
    assert [d.kind for d in found] == ["cpu"] and backend_of(found) == "CPU"


def test_a_gpu_build_offloads_all_layers_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "gpu_backend", lambda: True)
    assert requested_layers(GpuOffload()) == devices.ALL_LAYERS
    assert offloaded_layers(devices.ALL_LAYERS, model_layers=18) == 19  # and the output layer
    assert offloaded_layers(5, model_layers=18) == 5
    assert offloaded_layers(99, model_layers=18) == 19
    assert offloaded_layers(0, model_layers=18) == 0
    assert devices.llama_layers(devices.ALL_LAYERS) == 2**31 - 1 and devices.llama_layers(5) == 5
    cuda = [Device("CPU", "AMD EPYC", "cpu"), Device("CUDA0", "H200", "gpu")]
    assert backend_of(cuda) == "CUDA"


def test_a_build_of_ones_own_is_found_where_llama_cpp_loads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`LLAMA_CPP_LIB_PATH` (a CUDA build beside a CPU wheel's package, as on the GPU check's
    machine) is where llama_cpp loads libllama from, and libggml with it."""
    real_lib = Path(llama_cpp.__file__).parent / "lib"
    elsewhere = tmp_path / "llama_cpp" / "__init__.py"  # a package with no libraries
    elsewhere.parent.mkdir()
    monkeypatch.setattr(llama_cpp, "__file__", str(elsewhere))  # the module devices reads
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    assert devices.devices() == []
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(real_lib))
    assert [d.kind for d in devices.devices()] == ["cpu"]
