"""The start-up check of whether drafts are exact, on real weight types made from the
embedded model with llama.cpp's quantize (the served Q4_K_M is checked through
/system/status in tests/api/test_system.py)."""

import ctypes
from pathlib import Path

import llama_cpp

from shard.default_model import default_model_path
from shard.engine.llama_model import ContextShape, LlamaModel
from shard.engine.spec.exactness import drafts_are_exact

_LLAMA_FTYPE_MOSTLY_F16 = 1  # enum llama_ftype in llama.h


def test_f16_is_reported_not_exact_on_this_cpu_build(tmp_path: Path) -> None:
    """F16 matmuls of 2+ rows go through llamafile's sgemm and of 1 row through ggml's
    vec_dot, which accumulate in different orders: the check must see it. (When a build makes
    F16 exact, this test is the one to change.)"""
    target = tmp_path / "gemma-f16.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    source = str(default_model_path()).encode()
    assert llama_cpp.llama_model_quantize(source, str(target).encode(), ctypes.byref(params)) == 0
    model = LlamaModel(target, ContextShape(256, 1, 64, 2))
    try:
        assert drafts_are_exact(model, model.new_batch(64)) is False
    finally:
        model.close()
