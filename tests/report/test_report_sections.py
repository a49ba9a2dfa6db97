"""The report's matrix columns and its throughput, multimodal and harness-overhead sections, from hand-built cells.

The cell documents copy the structure `Orchestrator.store` writes (only the fields the report reads are filled).
"""

from __future__ import annotations

import re

import pytest

from chromium_cdp import find_chromium, inspect_page

from embedperf.report.html import render_html, render_markdown, write_html
from embedperf.report.markdown import overhead_lines, table
from embedperf.results.store import CELL_SCHEMA, flatten

RUN = "20260101-000000-abcd"
OVERHEAD = {"python": 210.0, "rust": 90.0, "cpp": 40.0}
PROFILE = {"threads": 2, "quick": False, "peak_gflops": 40.0, "bandwidth_gbs": 8.0, "created": "2026-01-01",
           "fingerprint": {"id": "0123456789abcdef", "cpu_model": "test CPU"}, "warnings": []}
CLIP = "openai/clip-vit-base-patch16"
CORPUS = {"kind": "corpus", "seed": 0, "lengths": "log-normal, median 64, sigma 0.8, clipped to [8, 412]",
          "padding": "right, to each batch's longest", "items": 1024, "batch": 32, "longest": 412,
          "real_tokens": 80000}


def cell(runtime: str, batch: int, seq: int, *, model: str = "BAAI/bge-m3", modality: str = "text",
         order: str | None = None, median_ms: float = 2.0, summary: dict | None = None, work: dict | None = None,
         workload: dict | None = None, zero_shot: dict | None = None, size: int | None = 90 * 2**20,
         status: str = "ok", reason: str | None = None) -> dict:
    null = runtime.startswith("null")
    scenario = "throughput" if order else "latency"
    flops = 1.0e9 * batch * seq / 1024
    return {
        "schema": CELL_SCHEMA, "run_id": RUN, "status": status, "reason": reason,
        "cell_id": f"{model.split('/')[-1]}__tiny__{runtime}__fp32__cpu__{scenario}__{modality}__b{batch}__"
                   f"{order or f's{seq}'}",
        "spec": {"model": model, "family": "clip" if model == CLIP else "bert", "source": "tiny", "revision": None,
                 "runtime": runtime, "language": "python", "precision": "fp32", "device": "cpu",
                 "scenario": scenario, "modality": modality, "order": order, "batch": batch, "seq": seq,
                 "truncate_dim": None, "threads": {"intra_op": 2, "inter_op": 1}, "timing": {},
                 "memory_limit_mb": None,
                 "workload": workload or {"kind": "tokens", "seed": 0, "padding": "right",
                                          "lengths": "row 0 = seq, others seeded in [seq/2, seq]"}},
        "model": {"weights": "random", "weights_sha256": None, "artifact": "none" if null else "onnx",
                  "size_on_disk_bytes": None if null else size},
        "machine": {"cpu_model": "test CPU", "cpus_available": 2, "load_average": [0.0]},
        "harness_overhead_ns": OVERHEAD,
        "raw": None,
        "summary": {"n": 50, "median_ms": median_ms, "mean_ms": median_ms, "p90_ms": median_ms * 1.1,
                    "p99_ms": median_ms * 1.2, "cv": 0.02, "ci_low_ms": median_ms * 0.99,
                    "ci_high_ms": median_ms * 1.01, "items_per_s": batch / median_ms * 1e3, "load_s": 0.5,
                    "first_call_s": 0.01, "peak_rss_mb": 300.0, "loop_peak_rss_mb": 280.0, "gpu_peak_mb": None,
                    "stop_rule": "min_reached", "target_ci": None, **(summary or {})},
        "parity": None if null else {"min_cosine": 0.9999999, "mean_cosine": 0.99999995, "max_abs_diff": 1e-6,
                                     "reference_spread": 0.2},
        "work": None if null else (work or {"flops": flops, "weight_bytes": 50e6, "arithmetic_intensity": flops / 50e6,
                                            "gflops": flops / (median_ms * 1e-3) / 1e9, "share_of_peak": None}),
        "zero_shot": zero_shot,
        "outliers": {"count": 0}, "warnings": [],
    }


def corpus_cell(runtime: str, order: str, items_per_s: float, waste: float) -> dict:
    return cell(runtime, 32, 412, order=order, median_ms=40.0, workload={**CORPUS, "order": order,
                                                                         "sorted": order == "sorted",
                                                                         "padding_waste": waste},
                summary={"items_per_s": items_per_s, "tokens_per_s": items_per_s * 78.125,
                         "padded_tokens_per_s": items_per_s * 78.125 / (1 - waste), "padding_waste": waste,
                         "passes": 3, "pass_median_s": 1024 / items_per_s},
                work={"flops": 2.5e12, "flops_per": "one pass over the corpus", "weight_bytes": 50e6,
                      "arithmetic_intensity": 1500.0, "gflops": 2.5e12 / (1024 / items_per_s) / 1e9,
                      "share_of_peak": None})


ZERO_SHOT = {"captions": 8, "images": 8, "rule": "softmax", "logit_scale": 100.0, "logit_bias": None,
             "max_abs_prob_diff": 1.5e-5, "max_abs_logit_diff": 3e-4, "top1_agreement": 1.0, "limit": 1e-3}


def tower_cells(runtime: str, batch: int) -> list[dict]:
    text = cell(runtime, batch, 77, model=CLIP, modality="text", median_ms=4.0, zero_shot=ZERO_SHOT,
                size=250 * 2**20)
    image = cell(runtime, batch, 224, model=CLIP, modality="image", median_ms=20.0, zero_shot=ZERO_SHOT,
                 size=350 * 2**20, workload={"kind": "images", "recipe": "clip", "size": 224, "images": None,
                                             "folder": None},
                 summary={"preprocess_ms_per_image": 3.25, "preprocess_ms_batch": 26.5})
    return [text, image]


def text_cells() -> list[dict]:
    return [cell(rt, b, s, median_ms=0.5 * b * s / 16) for rt in ("torch", "onnxruntime-python")
            for b in (1, 8) for s in (16, 128)] + [cell("null", 1, 16, median_ms=0.0002)]


def throughput_cells() -> list[dict]:
    return [corpus_cell("onnxruntime-python", "sorted", 123.4, 0.02), corpus_cell("onnxruntime-python", "unsorted",
                                                                                  98.7, 0.196),
            corpus_cell("torch", "sorted", 110.0, 0.02), corpus_cell("torch", "unsorted", 80.0, 0.196)]


def multimodal_cells() -> list[dict]:
    return tower_cells("onnxruntime-python", 8) + tower_cells("torch", 8)


def matrix_line(text: str, runtime: str, shape: str) -> str:
    hits = [line for line in text.splitlines() if f"| {runtime} | {shape} |" in line]
    assert len(hits) == 1, (runtime, shape, hits)
    return hits[0]


def test_matrix_shows_work_stop_rule_and_disk():
    c = cell("onnxruntime-python", 8, 128, median_ms=10.0,
             work={"flops": 1.23e9, "weight_bytes": 50e6, "arithmetic_intensity": 24.6, "gflops": 123.0,
                   "share_of_peak": 0.123},
             summary={"stop_rule": "ci_reached", "target_ci": 0.01}, size=int(90.5 * 2**20))
    text = table([c])
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    for column in ("batch×seq", "median ms", "95% CI ms", "items/s", "FLOPs", "GFLOP/s", "% peak", "stop", "load s",
                   "first call s", "peak RSS MB", "loop RSS MB", "disk MB", "min cos"):
        assert f"| {column} |" in header
    cells = [x.strip() for x in matrix_line(text, "onnxruntime-python", "8×128").strip("|").split("|")]
    assert len(cells) == header.count("|") - 1
    row = dict(zip([x.strip() for x in header.strip("|").split("|")], cells))
    assert row["FLOPs"] == "1.23 GFLOP" and row["GFLOP/s"] == "123.00" and row["% peak"] == "12.3%"
    assert row["stop"] == "ci_reached" and row["disk MB"] == "90.5" and row["items/s"] == "800.0"
    assert row["median ms"] == "10.000"
    assert "latency scenario, inputs right-padded" in text
    assert "GPU peak MB" not in text  # only when a cell ran on a GPU


def test_text_only_latency_run_has_no_throughput_or_multimodal_section():
    cells = text_cells()
    md = table(cells)
    assert "latency scenario" in md and "throughput scenario" not in md.lower()
    assert "Multimodal" not in md and "texts/s" not in md
    full = render_markdown(cells, PROFILE)
    assert "## Throughput scenario" not in full and "## Multimodal" not in full
    page = render_html(cells, PROFILE)
    assert 'id="throughput-scenario"' not in page and 'id="multimodal"' not in page
    assert 'data-figure="throughput"' in page


def test_throughput_cells_get_their_section_and_setup_line():
    cells = throughput_cells()
    md = table(cells)
    setup = md.splitlines()[0]
    assert "latency scenario" not in setup
    assert "throughput scenario: a corpus of 1024 items, lengths log-normal, median 64" in setup
    assert "80,000 real tokens" in setup and "padding waste sorted 2.0%, unsorted 19.6%" in setup
    line = matrix_line(md, "onnxruntime-python", "b32 sorted")
    assert "| 123.4 |" in line and "2.50 TFLOP/pass" in line
    assert matrix_line(md, "torch", "b32 unsorted")
    section = md[md.index("## Throughput scenario"):]
    assert "| model | runtime | batch | order | status | items/s | tokens/s | padded tokens/s | padding waste | " \
           "passes |" in section
    row = next(x for x in section.splitlines() if "onnxruntime-python | 32 | sorted" in x)
    assert "| 123.4 | 9641 | 9837 | 2.0% | 3 | 8.298 |" in row
    row = next(x for x in section.splitlines() if "onnxruntime-python | 32 | unsorted" in x)
    assert "| 98.7 | 7711 | 9591 | 19.6% | 3 |" in row
    # the full Markdown report has the section once, and so does the HTML
    full = render_markdown(cells)
    assert full.count("## Throughput scenario") == 1 and "| 123.4 |" in full
    page = render_html(cells)
    assert page.count('<section id="throughput-scenario">') == 1
    assert "<td>sorted</td>" in page and '<td class="num">123.4</td>' in page
    assert 'data-figure="throughput-scenario"' in page
    # no latency cells: the latency figures say why they are absent instead of drawing throughput calls
    assert 'data-figure="latency-batch"' not in page and 'data-figure="throughput"' not in page


def test_multimodal_cells_get_towers_side_by_side():
    cells = multimodal_cells()
    md = table(cells)
    assert "text tower padded to 77 tokens, image tower 224px images (clip preprocessing" in md
    assert matrix_line(md, "onnxruntime-python", "8×77 text")
    assert "| 400.0 |" in matrix_line(md, "onnxruntime-python", "8 img 224px")  # images/s
    assert "| 350.0 |" in matrix_line(md, "torch", "8 img 224px")  # disk MB of the image tower
    section = md[md.index("## Multimodal towers"):]
    assert "| texts/s | images/s | text tower ms/batch | image tower ms/batch | image tower ms/image | " \
           "preprocess ms/image | preprocess ms/batch | zero-shot max Δp |" in section
    row = next(x for x in section.splitlines() if "| onnxruntime-python | 8 |" in x)
    assert "| ok | 2000.0 | 400.0 | 4.000 | 20.000 | 2.500 | 3.250 | 26.500 | 1.50e-05 | 100% |" in row
    assert "each image of the batch against a fixed set of 8 captions, softmax probabilities" in section
    assert "Throughput scenario" not in md
    page = render_html(cells)
    assert '<section id="multimodal">' in page and '<td class="num">1.50e-05</td>' in page
    # the text and image towers get their own panels, never one latency-vs-seq line from 77 to 224
    assert 'data-figure="latency-seq"' not in page


def test_a_tower_that_failed_shows_in_the_multimodal_status():
    text, image = tower_cells("onnxruntime-python", 8)
    image = {**image, "status": "failed", "reason": "boom", "summary": None}
    md = table([text, image])
    row = next(x for x in md[md.index("## Multimodal towers"):].splitlines() if "| onnxruntime-python | 8 |" in x)
    assert "| text ok, image failed | 2000.0 | – |" in row


def test_harness_overhead_is_said_once_per_run():
    cells = text_cells()
    out = overhead_lines(cells).splitlines()
    assert out[0] == ("harness overhead per call (null runners at run start): python 0.21 µs, rust 0.09 µs, "
                      "cpp 0.04 µs")
    assert sum("null runners at run start" in line for line in out) == 1
    assert any(line.startswith("harness overhead per call (null, batch 1 × seq 16): median") for line in out)
    other = [{**c, "run_id": "20260102-000000-beef", "harness_overhead_ns": {"python": 300.0}} for c in cells[:1]]
    out = overhead_lines(cells + other).splitlines()
    assert f"harness overhead per call (run {RUN}, null runners at run start): python 0.21 µs" in out[0]
    assert out[1] == "harness overhead per call (run 20260102-000000-beef, null runners at run start): python 0.30 µs"
    assert overhead_lines([flatten(c) for c in cells[:1]]) == ""  # flat rows carry no run facts
    assert "python 0.21 µs, rust 0.09 µs, cpp 0.04 µs" in render_markdown(cells)


def everything() -> list[dict]:
    return text_cells() + throughput_cells() + multimodal_cells()


FIGURES = {"latency-batch", "latency-seq", "throughput", "throughput-scenario", "memory", "roofline"}
SECTIONS = ["verdicts", "latency", "matrix", "throughput", "throughput-scenario", "multimodal", "memory",
            "parity", "roofline", "warnings"]


def test_html_keeps_every_figure_with_throughput_and_multimodal_cells(tmp_path):
    text = write_html(everything(), tmp_path / "report.html", PROFILE).read_text()
    for figure in FIGURES:
        assert f'data-figure="{figure}"' in text
    assert text.count("<svg") == len(FIGURES)
    assert re.findall(r'<section id="([^"]+)">', text) == SECTIONS
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    # self-contained: nothing to run, nothing to load
    assert "<script" not in text.lower() and not re.search(r'\ssrc="', text)
    assert not re.search(r"url\((?!#)", text) and not re.search(r'href="(?!#|data:)', text)
    # memory bars carry the size on disk; the matrix its new columns
    assert "size on disk" in text.lower()
    for head in ("<th>FLOPs</th>", "<th>stop</th>", "<th>disk MB</th>"):
        assert head in text
    assert "<td>8 img 224px</td>" in text and "<td>8×77 text</td>" in text and "<td>b32 unsorted</td>" in text
    # flat rows (report --format json) lack a few document fields but still draw every figure
    flat = render_html([flatten(c) for c in everything()], PROFILE)
    assert flat.count("<svg") == len(FIGURES)


def test_markdown_report_with_every_kind_of_cell():
    md = render_markdown(everything(), PROFILE)
    assert md.count("## Throughput scenario") == 1 and md.count("## Multimodal towers") == 1
    assert md.index("## Throughput scenario") < md.index("## Multimodal towers") < md.index("## Parity")
    assert "latency scenario, inputs right-padded" in md and "throughput scenario: a corpus" in md
    assert "2500.0000 per pass" in md  # the work table says a corpus cell's FLOPs are per pass


def test_the_page_with_every_kind_of_cell_renders_in_headless_chromium(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found (Debian: apt-get install -y chromium)")
    page = write_html(everything(), tmp_path / "report.html", PROFILE)
    seen = inspect_page(binary, page, tmp_path / "chromium", tmp_path / "report.png")
    assert seen["errors"] == [], seen["errors"]
    assert seen["failed_requests"] == [] and seen["requests"] == [page.resolve().as_uri()]
    assert seen["sections"] == SECTIONS
    figures = {f["name"]: f for f in seen["figures"]}
    assert set(figures) == FIGURES
    for name, f in figures.items():
        assert f["paths"] > 10 and f["drawn"] > 10, (name, f)
        assert f["width"] > 200 and f["height"] > 150, (name, f)
        assert f["dangling"] == 0, (name, f)
