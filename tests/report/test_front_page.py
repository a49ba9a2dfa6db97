"""The page of a plan-sized report (six models, six runtimes, fp32 and int8, skipped and failed cells) from fixed
cell documents: what its first screen and its tables hold, and how it lays out at laptop width in Chromium."""

from __future__ import annotations

import html
import re
import zlib
from pathlib import Path

import pytest

from cell_docs import doc
from chromium_cdp import find_chromium, screenshots
from test_html import artifacts_dir

from embedperf.models.registry import get_model
from embedperf.report.html import write_html, write_markdown

MODELS = {  # model -> (source, ms at 1×128 of the fastest runtime)
    "sentence-transformers/all-MiniLM-L6-v2": ("package", 4.0), "google/embeddinggemma-300m": ("twin", 40.0),
    "Qwen/Qwen3-Embedding-0.6B": ("twin", 110.0), "BAAI/bge-m3": ("twin", 95.0),
    "openai/clip-vit-base-patch16": ("twin", 20.0), "google/siglip-base-patch16-224": ("twin", 22.0),
}
FACTOR = {"torch": 1.6, "onnxruntime-python": 1.05, "onnxruntime-cpp": 1.02, "onnxruntime-rust": 1.0,
          "candle": 2.2, "openvino": 0.97}


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def plan_cells() -> list[dict]:
    out = []
    for model, (source, ms) in MODELS.items():
        spec = get_model(model)
        shapes = ([("text", b, spec.max_length) for b in (1, 8)] + [("image", b, 224) for b in (1, 8)]
                  if spec.multimodal else [("text", b, s) for b in (1, 8) for s in (128, 512)])
        for modality, b, s in shapes:
            for rt, f in FACTOR.items():
                kw = dict(model=model, source=source, batch=b, seq=s, modality=modality, k=2, n=12,
                          seed=_seed(model, rt, b, s, modality), rss_mb=300 + 900 * f,
                          warnings=["noisy (every fork): CV 12.0% > 5%"] if rt == "candle" else None)
                scale = ms * b * (s / 128 if not spec.multimodal else 1) * (4 if modality == "image" else 1)
                if rt == "candle" and model == "BAAI/bge-m3" and s == 512:
                    out.append(doc(rt, status="failed", reason="runner hit its time cap (hang?)", **kw))
                    continue
                out.append(doc(rt, scale * f, **kw))
                if rt in ("onnxruntime-python", "openvino") and not spec.multimodal:
                    out.append(doc(rt, scale * f * 0.55, precision="int8",
                                   accuracy={"recall_at_10": 0.96, "spearman": 0.993}, **kw))
                if rt == "torch":
                    out.append(doc(rt, status="skipped", precision="bf16", reason="bf16: no native CPU kernels "
                                   "(no avx512_bf16 or amx_bf16)", **kw))
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    return write_html(plan_cells(), tmp_path_factory.mktemp("plan") / "report.html")


def test_the_first_sections_answer_first(page):
    text = page.read_text()
    sections = re.findall(r'<section id="([^"]+)">', text)
    # these cells hold several precisions: speed against accuracy comes right after the models
    assert sections[:4] == ["verdicts", "models", "tradeoff", "latency"]
    verdicts = text[text.index('<section id="verdicts">'):text.index('<section id="models">')]
    # one headline row per model, a column per precision: fp32, bf16 (every cell skipped), int8 (text models)
    table = verdicts[:verdicts.index("</table>")]
    assert table.count('<tr><td class="wrap"><b>') == 6
    assert "<th>fp32</th><th>bf16</th><th>int8</th>" in table
    assert "Every cell skipped: bf16: no native CPU kernels" in table
    assert "openvino fastest or tied at 4 of 4 shape(s)" in table
    # the grid: int8 rows apart from fp32 rows; skipped and failed cells say why on hover
    assert ">ort-rust fp32</td>" in verdicts and ">openvino int8</td>" in verdicts
    assert 'title="skipped: bf16: no native CPU kernels (no avx512_bf16 or amx_bf16)">–</td>' in verdicts
    assert 'title="failed: runner hit its time cap (hang?)">✗</td>' in verdicts
    # each shape's verdict names the failure, and int8's accuracy cost where the cell has it
    assert "Failed: candle (runner hit its time cap (hang?))" in html.unescape(verdicts)
    assert "openvino int8 accuracy vs fp32: recall@10 0.960, Spearman 0.9930" in html.unescape(verdicts)
    models = text[text.index('<section id="models">'):text.index('<section id="latency">')]
    for check in ("EmbeddingGemma is the fastest of the five", "CLIP is faster than SigLIP",
                  "EmbeddingGemma uses the least memory"):
        assert check in models
    assert "context length 2048 tokens; not 8192 tokens as the plan says" in models


def test_the_markdown_twin_says_the_same(page, tmp_path):
    cells = plan_cells()
    md = write_markdown(cells, tmp_path / "report.md").read_text()
    page_text = html.unescape(page.read_text())
    sentences = re.findall(r"^  - [^:]+: (.+)$", md, flags=re.M)
    assert len(sentences) > 40
    for sentence in sentences:
        assert sentence in page_text
    assert (tmp_path / "report-figures" / "latency-seq.svg").exists()


def test_the_plan_sized_page_at_laptop_width(page, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found (Debian: apt-get install -y chromium)")
    out = artifacts_dir(tmp_path) / "plan"
    seen = screenshots(binary, page, out, {"first-screen": None, "models": "#models", "scaling": "#latency",
                                           "matrix": "#matrix"})
    layout = seen["layout"]
    assert layout["wide"] == [], layout["wide"]
    assert layout["pageWidth"] <= layout["viewWidth"]
    assert layout["verdictsTop"] < 768 and layout["firstHeatTop"] < 768
