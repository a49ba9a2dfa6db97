"""Matryoshka truncation (--truncate-dim): every runtime against the reference truncated the same way."""

import pytest

from conftest import FAST, available, cells_of, embedperf
from embedperf.spec import SpecError, model_choice

REAL_RUNTIMES = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino"]


def test_truncated_cells_match_the_truncated_reference_on_every_runtime(results):
    runtimes = available(REAL_RUNTIMES)
    proc = embedperf("run", "--model", "Qwen/Qwen3-Embedding-0.6B", "--source", "tiny", "--truncate-dim", "32",
                     "--runtimes", ",".join(runtimes), "--batch", "2", "--seq", "16", *FAST,
                     "--results", str(results), timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = cells_of(results)
    assert sorted(c["runtime"] for c in cells) == sorted(runtimes)
    for cell in cells:
        assert cell["truncate_dim"] == 32
        assert cell["status"] == "ok", cell["reason"]
        assert cell["min_cosine"] >= 0.9999, cell


def test_a_dim_the_output_cannot_give_is_refused_at_validation():
    assert model_choice("Qwen/Qwen3-Embedding-0.6B", "tiny", truncate_dim=32).truncate_dim == 32
    for dim in (64, 128, 768):  # the tiny config's width is 64: not below it
        with pytest.raises(SpecError, match="output width 64"):
            model_choice("Qwen/Qwen3-Embedding-0.6B", "tiny", truncate_dim=dim)
    assert model_choice("google/embeddinggemma-300m", "twin", truncate_dim=128).truncate_dim == 128
    with pytest.raises(SpecError, match="none"):
        model_choice("google/embeddinggemma-300m", "tiny", truncate_dim=128)  # tiny width 64 < every MRL dim
