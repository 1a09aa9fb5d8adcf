"""What llama.cpp computes on: ggml's backend devices, and how many of a model's layers go to
a GPU.

llama-cpp-python binds no call for the device registry, so it is read through ctypes from the
libggml that llama-cpp-python ships (and has already loaded). Called on the engine thread (or a
scout's model thread), like every other llama.cpp call.
"""

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from shard.engine.types import Device

log = logging.getLogger(__name__)

_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}  # enum ggml_backend_dev_type, ggml-backend.h
ALL_LAYERS = -1
"""`--n-gpu-layers -1`: every layer, as llama.cpp counts them (the output layer too)."""


@dataclass(frozen=True)
class GpuOffload:
    """How many layers to put on a GPU (None: all when llama.cpp has a GPU backend, else
    none), and which GPU holds the model when it fits on one."""

    layers: int | None = None
    main_gpu: int = 0


def gpu_backend() -> bool:
    """Whether this llama.cpp build can offload layers (CUDA, Metal, Vulkan, ...)."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def requested_layers(offload: GpuOffload) -> int:
    """The n_gpu_layers the setting asks for: the setting, or all layers on a GPU build."""
    if offload.layers is not None:
        return offload.layers
    return ALL_LAYERS if gpu_backend() else 0


def llama_layers(requested: int) -> int:
    """As llama.cpp takes it: "all" as the largest int32, as llama-cpp-python's own `Llama`
    passes it (older llama.cpp read a negative count as none)."""
    return 0x7FFFFFFF if requested < 0 else requested


def offloaded_layers(requested: int, model_layers: int) -> int:
    """How many layers llama.cpp puts on the GPU: the request, at most the model's repeating
    layers plus the output layer; none without a GPU backend."""
    if not gpu_backend() or requested == 0:
        return 0
    most = model_layers + 1
    return most if requested < 0 else min(requested, most)


def devices() -> list[Device]:
    """ggml's backend devices (llama_backend_init must have run); empty if unreadable."""
    try:
        library = _libggml()
    except AttributeError:  # a libggml without the device registry
        log.warning("this libggml lists no compute devices")
        return []
    if library is None:
        return []
    found = []
    for index in range(library.ggml_backend_dev_count()):
        device = library.ggml_backend_dev_get(index)
        name = (library.ggml_backend_dev_name(device) or b"").decode(errors="replace")
        text = (library.ggml_backend_dev_description(device) or b"").decode(errors="replace")
        kind = _KINDS.get(library.ggml_backend_dev_type(device), "unknown")
        found.append(Device(name, text, kind))
    return found


def backend_of(found: list[Device]) -> str:
    """The backend doing the work, as a name: the GPU devices' names, else CPU."""
    accelerated = sorted({d.name.rstrip("0123456789") for d in found if d.kind in ("gpu", "igpu")})
    return "+".join(accelerated) if accelerated else "CPU"


def _libggml() -> ctypes.CDLL | None:
    """The libggml beside the libllama that llama_cpp loaded: `$LLAMA_CPP_LIB_PATH`'s (a
    build of one's own, as llama_cpp itself honours it), else the package's."""
    folders = [Path(llama_cpp.__file__).parent / "lib"]
    if override := os.environ.get("LLAMA_CPP_LIB_PATH"):
        folders.insert(0, Path(override))
    candidates = []
    for folder in folders:
        candidates += sorted(folder.glob("libggml.so*")) + sorted(folder.glob("libggml.dylib"))
        candidates += sorted(folder.glob("ggml.dll"))
    for path in candidates:
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        library.ggml_backend_dev_count.restype = ctypes.c_size_t
        library.ggml_backend_dev_get.restype = ctypes.c_void_p
        library.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for text in (library.ggml_backend_dev_name, library.ggml_backend_dev_description):
            text.restype = ctypes.c_char_p
            text.argtypes = [ctypes.c_void_p]
        library.ggml_backend_dev_type.restype = ctypes.c_int
        library.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        return library
    log.warning("could not find libggml beside llama_cpp to list compute devices")
    return None
