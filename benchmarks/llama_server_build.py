"""Build llama.cpp's `llama-server` from the exact source llama-cpp-python was built from.

Using the llama.cpp copy vendored in llama-cpp-python's sdist means all three servers in the
benchmark run the same kernels, so differences come from scheduling, not from llama.cpp
versions. The binary is cached per llama-cpp-python version; a second run skips the build.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Options discovered for the llama.cpp vendored in llama-cpp-python 0.3.36:
# - LLAMA_CURL is deprecated and ignored (kept for older versions; it only warns).
# - the server lives under tools/, so LLAMA_BUILD_TOOLS must be ON as well as LLAMA_BUILD_SERVER.
# - LLAMA_USE_PREBUILT_UI defaults to ON and downloads the web UI from a Hugging Face bucket at
#   build time; it is turned OFF (no network, no UI needed), as is OpenSSL (no HTTPS needed).
# - static libraries, so the cached binary does not depend on the build tree.
CMAKE_OPTIONS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)


def default_cache_dir() -> Path:
    """Benchmark cache outside the repository: `$SHARD_BENCH_CACHE`, else ~/.cache/shard/bench."""
    override = os.environ.get("SHARD_BENCH_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "shard" / "bench"


def llama_cpp_python_version() -> str:
    """The installed llama-cpp-python version: the source we build must match it.

    A copy put on the path without its metadata (as the GPU kit does) still names its version.
    """
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        import llama_cpp

        return str(llama_cpp.__version__)


def _log(message: str) -> None:
    print(f"[llama-server build] {message}", file=sys.stderr, flush=True)


def _run_logged(command: list[str], log_path: Path) -> None:
    """Run a build step, echo its progress lines, keep the full output in a log file."""
    _log("$ " + " ".join(command))
    with log_path.open("a") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if line.startswith("[") or line.startswith("-- "):
                print("  " + line.rstrip()[:120], file=sys.stderr, flush=True)
        returncode = process.wait()
    if returncode != 0:
        tail = log_path.read_text().splitlines()[-40:]
        raise RuntimeError(
            f"{command[0]} failed with exit code {returncode}; full log: {log_path}\n"
            + "\n".join(tail)
        )


def _download_sdist(cache_dir: Path, pkg_version: str) -> Path:
    """Fetch llama-cpp-python's source distribution through pip (PyPI only, no GitHub)."""
    sdist_dir = cache_dir / "sdist"
    found = sorted(sdist_dir.glob(f"llama_cpp_python-{pkg_version}.tar.gz"))
    if found:
        return found[0]
    sdist_dir.mkdir(parents=True, exist_ok=True)
    _log(f"downloading llama-cpp-python=={pkg_version} sdist into {sdist_dir}")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"llama-cpp-python=={pkg_version}", "-d", str(sdist_dir),
        ],
        check=True,
    )  # fmt: skip
    found = sorted(sdist_dir.glob(f"llama_cpp_python-{pkg_version}.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download left no llama_cpp_python-{pkg_version}.tar.gz")
    return found[0]


def _extract(sdist: Path, cache_dir: Path, pkg_version: str) -> Path:
    """Unpack the sdist once; a marker file tells a finished extraction from a broken one."""
    root = cache_dir / "src" / f"llama_cpp_python-{pkg_version}"
    marker = root / ".extracted"
    if not marker.exists():
        _log(f"extracting {sdist.name}")
        shutil.rmtree(root, ignore_errors=True)
        with tarfile.open(sdist) as archive:
            archive.extractall(cache_dir / "src", filter="data")
        marker.touch()
    source = root / "vendor" / "llama.cpp"
    if not (source / "CMakeLists.txt").exists():
        raise RuntimeError(f"no vendored llama.cpp in {root}")
    return source


def _works(binary: Path) -> bool:
    """A cached binary counts only if it starts; a half-copied file must be rebuilt."""
    if not binary.exists():
        return False
    probe = subprocess.run([str(binary), "--version"], capture_output=True, timeout=60)
    return probe.returncode == 0


def ensure_llama_server(cache_dir: Path | None = None) -> Path:
    """Return a working llama-server binary for the installed llama-cpp-python, building it
    on first use (several minutes on 2 cores)."""
    cache_dir = cache_dir or default_cache_dir()
    pkg_version = llama_cpp_python_version()
    binary = cache_dir / "bin" / f"llama-server-{pkg_version}"
    if _works(binary):
        return binary
    started = time.monotonic()
    source = _extract(_download_sdist(cache_dir, pkg_version), cache_dir, pkg_version)
    build_dir = cache_dir / f"build-{pkg_version}"
    log_path = cache_dir / f"build-{pkg_version}.log"
    log_path.unlink(missing_ok=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(os.cpu_count() or 2)
    _log(f"building llama-server from {source} (log: {log_path})")
    _run_logged(
        ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *CMAKE_OPTIONS], log_path
    )
    _run_logged(
        ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", jobs], log_path
    )
    built = build_dir / "bin" / "llama-server"
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.replace(binary)
    if not _works(binary):
        raise RuntimeError(f"built {binary} but `--version` fails")
    _log(f"built {binary} in {time.monotonic() - started:.0f} s")
    return binary


def llama_server_version(binary: Path) -> str:
    """The build line llama-server prints, e.g. `version: 1 (0c1e570)`, for the report."""
    probe = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    lines = (probe.stdout + probe.stderr).splitlines()
    return next((line.strip() for line in lines if line.startswith("version")), "unknown")


if __name__ == "__main__":
    print(ensure_llama_server())
