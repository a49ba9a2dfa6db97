"""The model comparison table, the plan's expectations checked from fixed cells, and the plan's facts."""

from __future__ import annotations

import re
import zlib

import pytest

from cell_docs import doc

from embedperf.measure.stats import ratio_ci
from embedperf.models.registry import get_model
from embedperf.report.front import models_lines
from embedperf.report.models import BGE, CLIP, GEMMA, MINILM, QWEN, SIGLIP, expectations, model_rows, plan_facts
from embedperf.report.verdicts import fmt_ratio, verdicts
from embedperf.results.store import fork_series

RUNTIMES = ("torch", "onnxruntime-rust", "openvino")


def _seed(*parts) -> int:
    """A seed stable across processes (str hashes are salted per process)."""
    return zlib.crc32(repr(parts).encode())


def text_model(model: str, ms_1x128: float, rss: float = 1000.0, batches=(1, 32), **kw) -> list[dict]:
    """Cells of one text model: torch 2× slower than the ORT runner, OpenVINO 1.5×; time linear in batch."""
    out = []
    for b in batches:
        for i, (rt, factor) in enumerate(zip(RUNTIMES, (2.0, 1.0, 1.5))):
            out.append(doc(rt, ms_1x128 * b * factor, model=model, batch=b, seq=128, rss_mb=rss * (1 + 0.2 * i),
                           seed=_seed(model, b, rt), **kw))
    return out


def towers(model: str, text_ms: float, image_ms: float, rss: float = 800.0, batches=(1, 32)) -> list[dict]:
    seq = get_model(model).max_length
    out = []
    for b in batches:
        for rt in RUNTIMES:
            out.append(doc(rt, text_ms * b, model=model, batch=b, seq=seq, rss_mb=rss, seed=_seed(model, b, rt, 1)))
            out.append(doc(rt, image_ms * b, model=model, batch=b, seq=224, modality="image", rss_mb=rss * 1.3,
                           seed=_seed(model, b, rt, 2)))
    return out


def plan_as_written() -> list[dict]:
    """Cells where every expectation of the plan holds."""
    return (text_model(GEMMA, 10.0, rss=900.0) + text_model(QWEN, 20.0, rss=2500.0) + text_model(BGE, 21.0, rss=2400.0)
            + towers(CLIP, 12.0, 40.0, rss=1000.0) + towers(SIGLIP, 14.0, 50.0, rss=1100.0))


def checks_of(cells) -> dict[str, object]:
    ((bench, checks),) = expectations(cells)
    return {c.claim: c for c in checks}


def test_every_expectation_held():
    checks = checks_of(plan_as_written())
    assert {claim: c.status for claim, c in checks.items()} == {
        "EmbeddingGemma is the fastest of the five": "held",
        "Qwen3-Embedding is about 2× slower than EmbeddingGemma": "held",
        "BGE-M3 is similar in speed to Qwen3-Embedding": "held",
        "CLIP is faster than SigLIP": "held",
        "EmbeddingGemma uses the least memory": "held",
    }
    qwen = checks["Qwen3-Embedding is about 2× slower than EmbeddingGemma"]
    assert len(qwen.evidence) == 2 and "1×128" in qwen.evidence[0] and "32×128" in qwen.evidence[1]


def test_the_evidence_is_ratio_ci_of_the_fastest_cells():
    cells = plan_as_written()
    qwen = checks_of(cells)["Qwen3-Embedding is about 2× slower than EmbeddingGemma"]
    fastest = {m: next(c for c in cells if c["spec"]["model"] == m and c["spec"]["runtime"] == "onnxruntime-rust"
                       and c["spec"]["batch"] == 1) for m in (QWEN, GEMMA)}
    ratio, low, high = ratio_ci(fork_series(fastest[QWEN]), fork_series(fastest[GEMMA]))
    assert f"takes {fmt_ratio(ratio)}× ({fmt_ratio(low)}–{fmt_ratio(high)}×) the time of" in qwen.evidence[0]
    assert "Qwen3-Embedding-0.6B 1×128 (onnxruntime-rust" in qwen.evidence[0]


def test_expectations_not_held():
    cells = (text_model(GEMMA, 10.0, rss=3000.0) + text_model(QWEN, 40.0, rss=2500.0)
             + text_model(BGE, 8.0, rss=2400.0) + towers(CLIP, 14.0, 60.0) + towers(SIGLIP, 12.0, 50.0))
    checks = checks_of(cells)
    assert checks["EmbeddingGemma is the fastest of the five"].status == "not held"  # BGE-M3 is faster
    assert checks["Qwen3-Embedding is about 2× slower than EmbeddingGemma"].status == "not held"  # 4×
    assert checks["BGE-M3 is similar in speed to Qwen3-Embedding"].status == "not held"  # 5× apart
    assert checks["CLIP is faster than SigLIP"].status == "not held"
    assert checks["EmbeddingGemma uses the least memory"].status == "not held"


def test_noise_makes_an_expectation_inconclusive_not_held():
    """Qwen3 at 2.5× Gemma with very noisy cells: the CI straddles the band's edge."""
    cells = (text_model(GEMMA, 10.0, batches=(1,)) +
             [doc(rt, 25.0 * f, model=QWEN, spread=0.6, n=6, k=2, seed=i)
              for i, (rt, f) in enumerate(zip(RUNTIMES, (2.0, 1.0, 1.5)))])
    check = checks_of(cells)["Qwen3-Embedding is about 2× slower than EmbeddingGemma"]
    assert check.status == "inconclusive", check.evidence


def test_missing_models_make_a_claim_about_all_five_not_checkable():
    cells = text_model(GEMMA, 10.0) + text_model(QWEN, 20.0)
    checks = checks_of(cells)
    fastest = checks["EmbeddingGemma is the fastest of the five"]
    assert fastest.status == "not checkable"  # faster than Qwen3, but three models were not run
    assert any("not run here: bge-m3" in e for e in fastest.evidence)
    assert checks["Qwen3-Embedding is about 2× slower than EmbeddingGemma"].status == "held"
    assert checks["CLIP is faster than SigLIP"].status == "not checkable"


def test_a_run_without_batch_32_compares_its_largest_common_batch():
    cells = text_model(GEMMA, 10.0, batches=(1, 8)) + text_model(QWEN, 20.0, batches=(1, 8))
    qwen = checks_of(cells)["Qwen3-Embedding is about 2× slower than EmbeddingGemma"]
    assert qwen.status == "held" and "8×128" in qwen.evidence[1]
    (gemma, _) = model_rows(cells)
    assert gemma.batch_items.shape == "8×128" and gemma.batch_items.runtime == "onnxruntime-rust"


def test_benches_are_checked_apart():
    a = text_model(GEMMA, 10.0) + text_model(QWEN, 20.0)
    b = text_model(GEMMA, 10.0, threads=8) + text_model(QWEN, 50.0, threads=8)
    result = dict(expectations(a + b))
    assert len(result) == 2
    statuses = sorted(next(c.status for c in checks if c.claim.startswith("Qwen3")) for checks in result.values())
    assert statuses == ["held", "not held"]


def test_model_table_rows():
    cells = plan_as_written() + [doc("onnxruntime-rust", 2.0, model=MINILM, source="package", parameters=None,
                                     output_dim=384)]
    rows = {r.label: r for r in model_rows(cells)}
    assert set(rows) == {"embeddinggemma-300m", "Qwen3-Embedding-0.6B", "bge-m3", "clip-vit-base-patch16 text tower",
                         "clip-vit-base-patch16 image tower", "siglip-base-patch16-224 text tower",
                         "siglip-base-patch16-224 image tower", "all-MiniLM-L6-v2"}
    g = rows["embeddinggemma-300m"]
    assert g.latency.runtime == "onnxruntime-rust" and g.latency.value == pytest.approx(10.0, rel=0.02)
    assert g.batch_items.value == pytest.approx(32 / 0.320, rel=0.03)  # items/s of the fastest at 32×128
    assert g.peak_rss.runtime == "torch" and g.peak_rss.value == 900.0
    assert g.best == "onnxruntime-rust" and g.best_wins == "2 of 2"
    # parameters from the document when it has them, else counted from the registry's architecture
    minilm = rows["all-MiniLM-L6-v2"]
    assert minilm.parameters == pytest.approx(22.7e6, rel=0.01) and minilm.output_dim == 384
    image = rows["clip-vit-base-patch16 image tower"]
    assert image.latency.shape == "1 img 224px" and image.latency.value == pytest.approx(40.0, rel=0.02)
    text = "\n".join(models_lines(cells, verdicts(cells)))
    assert re.search(r"\| embeddinggemma-300m \| twin, fp32, cpu, 2 thr \| 567\.8 M \| 1024 \| (10\.0|9\.9\d) "
                     r"\(onnxruntime-rust\) \| [\d.]+ \(onnxruntime-rust\) \| – \| 900 \(torch\) \|", text)
    assert "✅ held — **EmbeddingGemma is the fastest of the five**" in text


def test_the_plans_facts_come_from_the_registry():
    facts = {(f.model, f.what): f for f in plan_facts()}
    gemma = get_model(GEMMA)
    dim = facts[(GEMMA, "output dimension")]
    assert dim.plan == "256" and dim.actual.startswith(str(gemma.output_dim)) and "512/256/128" in dim.actual
    assert facts[(GEMMA, "context length")].actual == f"{gemma.max_length} tokens" == "2048 tokens"
    assert facts[(QWEN, "output dimension")].actual.startswith("1024")
    lines = models_lines(text_model(GEMMA, 10.0), [])
    assert sum("The plan's facts" in x for x in lines) == 1
    assert any("output dimension 768, with Matryoshka cuts to 512/256/128; not 256 as the plan says" in x
               for x in lines)
    # a report without the plan's models says nothing about the plan's facts
    assert not any("plan's facts" in x for x in models_lines([doc("openvino", model=MINILM, source="package")], []))
