"""The HTML report from a small real run: self-contained, every figure drawn, no errors in a real browser."""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import IN_CI, embedperf
from chromium_cdp import find_chromium, inspect_page, screenshots

from embedperf.report.html import render_markdown, write_html, write_markdown
from embedperf.results.store import load_cells

PROFILE = {  # the shape load_or_calibrate returns; the figures only read these fields
    "threads": 2, "quick": False, "peak_gflops": 40.0, "bandwidth_gbs": 8.0, "bf16": "unsupported",
    "bf16_reason": "no avx512_bf16 or amx_bf16 CPU flag", "fp16": "unsupported", "created": "2026-01-01T00:00:00",
    "fingerprint": {"id": "0123456789abcdef", "cpu_model": "test CPU"}, "warnings": [],
}
FIGURES = {"latency-batch", "latency-seq", "throughput", "memory", "roofline"}
SECTIONS = ["verdicts", "models", "latency", "matrix", "throughput", "memory", "parity", "roofline", "warnings"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    results = tmp_path_factory.mktemp("report-run")
    proc = embedperf("run", "--model", "BAAI/bge-m3", "--source", "tiny", "--runtimes", "torch,onnxruntime-python,null",
                     "--batch", "1,2", "--seq", "16,32", "--warmup", "1", "--min-calls", "3", "--min-seconds", "0", "--target-ci", "0",
                     "--results", str(results), timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = load_cells([results])
    assert len(docs) == 12 and all(d["status"] == "ok" for d in docs), [(d["cell_id"], d["reason"]) for d in docs]
    return docs


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $EMBEDPERF_TEST_ARTIFACTS when set (CI uploads it), else the test's tmp folder."""
    explicit = os.environ.get("EMBEDPERF_TEST_ARTIFACTS")
    out = Path(explicit) if explicit else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_html_is_one_self_contained_file(cells, tmp_path):
    page = write_html(cells, tmp_path / "report.html", PROFILE)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()  # nothing to run
    # nothing is loaded: no src, no stylesheet link, no url() but in-document references
    assert not re.search(r'\ssrc="', text)
    assert not re.search(r'<link[^>]+rel="stylesheet"', text)
    assert not re.search(r"url\((?!#)", text)
    assert not re.search(r'href="(?!#|data:)', text)
    assert not re.search(r"@import", text)
    for figure in FIGURES:
        assert f'data-figure="{figure}"' in text
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert text.count("<svg") == len(FIGURES)
    # every cell of the run is in the matrix tables, with its runtime, precision and shape
    for d in cells:
        assert f"<td>{d['spec']['runtime']}</td><td>fp32</td><td>{d['spec']['batch']}×{d['spec']['seq']}</td>" in text
    # every figure names the machine, threads, precision and weights
    machine, threads = cells[0]["machine"]["cpu_model"], cells[0]["spec"]["threads"]["intra_op"]
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", text)
    assert len(captions) == len(FIGURES)
    for caption in captions:
        assert machine in html.unescape(caption) and f"{threads} thread(s)" in caption
        assert "fp32" in caption and "weights random (tiny)" in caption
    # the ids of the five inlined SVGs never collide
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_roofline_is_optional(cells, tmp_path):
    text = write_html(cells, tmp_path / "report.html", None).read_text()
    assert "Roofline skipped: no machine profile" in text
    assert 'data-figure="roofline"' not in text
    assert text.count("<svg") == len(FIGURES) - 1
    # work figures come from the registry even without a profile; share of peak needs one
    assert "GFLOP per call" in text


def test_markdown_has_the_same_tables(cells, tmp_path):
    out = write_markdown(cells, tmp_path / "report.md", PROFILE)
    text = out.read_text()
    figures = {f.stem: f"report-figures/{f.name}" for f in (tmp_path / "report-figures").iterdir()}
    assert set(figures) == FIGURES
    assert text == render_markdown(cells, PROFILE, figures)
    for name, link in figures.items():
        assert f"]({link})" in text
        assert (tmp_path / link).read_text().startswith("<svg")
    for heading in ("## Verdicts", "## Models side by side", "| model | runtime | batch×seq | status | median ms |",
                    "## Parity", "| min cosine |", "## Work and roofline", "| GFLOP per call |", "share of peak",
                    "Warnings ("):
        assert heading in text
    assert text.index("## Verdicts") < text.index("## Models side by side") < text.index("## Matrix")
    assert text.count("| bge-m3 |") == 12 + 1  # the matrix: one line per cell; the model table: one line
    assert "peak fp32 matmul 40.0 GFLOP/s" in text


def test_flat_rows_work_too(cells, tmp_path):
    from embedperf.results.store import flatten

    text = write_html([flatten(c) for c in cells], tmp_path / "flat.html", PROFILE).read_text()
    assert text.count("<svg") == len(FIGURES)


def test_empty_report(tmp_path):
    text = write_html([], tmp_path / "empty.html").read_text()
    assert "No cells." in text and "<svg" not in text


def test_the_page_renders_in_headless_chromium(cells, tmp_path):
    binary = find_chromium()
    if binary is None:
        reason = ("chromium not found (Debian: apt-get install -y chromium; or set EMBEDPERF_CHROMIUM to a "
                  "Chrome/Chromium binary)")
        if IN_CI and os.environ.get("EMBEDPERF_REQUIRE_CHROMIUM"):
            pytest.fail(reason)
        pytest.skip(reason)
    page = write_html(cells, tmp_path / "report.html", PROFILE)
    shot = artifacts_dir(tmp_path) / "report.png"
    seen = inspect_page(binary, page, tmp_path / "chromium", shot)
    assert seen["errors"] == [], seen["errors"]
    assert seen["failed_requests"] == [], seen["failed_requests"]
    assert seen["requests"] == [page.resolve().as_uri()], seen["requests"]  # the page itself, nothing else
    assert seen["scripts"] == 0
    assert seen["sections"] == SECTIONS
    figures = {f["name"]: f for f in seen["figures"]}
    assert set(figures) == FIGURES
    for name, f in figures.items():
        assert f["paths"] > 10 and f["drawn"] > 10, (name, f)
        assert f["width"] > 200 and f["height"] > 150, (name, f)
        assert f["dangling"] == 0, (name, f)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if shot.parent != tmp_path:  # keep the page beside its screenshot
        shutil.copy(page, shot.with_suffix(".html"))


def test_profile_for_uses_only_this_machines_profile(cells, tmp_path, monkeypatch):
    import copy

    from embedperf.measure import calibrate
    from embedperf.report.html import profile_for

    monkeypatch.setenv("EMBEDPERF_CACHE", str(tmp_path / "cache"))
    assert profile_for(cells) is None  # no profile yet: no roofline, and nothing is measured
    threads = cells[0]["spec"]["threads"]["intra_op"]
    calibrate.save_entry({**{k: v for k, v in PROFILE.items() if k != "fingerprint"}, "threads": threads})
    found = profile_for(cells)
    assert found["peak_gflops"] == PROFILE["peak_gflops"] and found["fingerprint"]["id"]
    elsewhere = copy.deepcopy(cells)
    for c in elsewhere:  # same CPU model string, another machine profile (other flags, memory or quota)
        if c.get("work"):
            c["work"]["machine_profile"]["id"] = "fedcba9876543210"
    assert profile_for(elsewhere) is None


def test_the_report_never_divides_a_cell_by_another_precisions_peak(cells):
    """A bf16 (or CUDA) cell leaves its share of peak blank when no peak of its own precision exists;
    the report must not fill it in with the fp32 CPU peak."""
    import copy

    from embedperf.report.html import enrich
    from embedperf.results.store import flatten

    doc = copy.deepcopy(next(c for c in cells if c["spec"]["runtime"] == "torch"))
    doc["spec"]["precision"] = "bf16"
    doc["work"]["share_of_peak"] = None
    (row,) = enrich([flatten(doc)], PROFILE)
    assert row["gflops"] and row["share_of_peak"] is None


def test_a_single_sequence_length_gets_a_note_not_a_flat_plot(cells, tmp_path):
    one_seq = [c for c in cells if c["spec"]["seq"] == 16]
    text = write_html(one_seq, tmp_path / "one.html", PROFILE).read_text()
    assert 'data-figure="latency-seq"' not in text
    assert "no setup has ok cells at two sequence lengths" in text
    assert 'data-figure="latency-batch"' in text


def _chromium_or_skip() -> str:
    binary = find_chromium()
    if binary is None:
        reason = ("chromium not found (Debian: apt-get install -y chromium; or set EMBEDPERF_CHROMIUM to a "
                  "Chrome/Chromium binary)")
        if IN_CI and os.environ.get("EMBEDPERF_REQUIRE_CHROMIUM"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def test_the_first_screen_at_laptop_width_is_verdicts_and_the_speedup_grid(cells, tmp_path):
    """At 1366×768 the first screen holds the verdicts and the speedup grid, and no table runs off the page."""
    page = write_html(cells, tmp_path / "report.html", PROFILE)
    out = artifacts_dir(tmp_path) / "laptop"
    seen = screenshots(_chromium_or_skip(), page, out, {"first-screen": None, "matrix": "#matrix"})
    layout = seen["layout"]
    assert layout["wide"] == [], layout["wide"]  # every table fits its column: wrapped or grouped, not scrolled
    assert layout["pageWidth"] <= layout["viewWidth"]
    assert 0 < layout["verdictsTop"] < 768 and layout["firstHeatTop"] < 768
    for png in seen["png"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_verdict_on_the_page_names_the_fastest_of_its_own_cells(cells, tmp_path):
    """Each verdict row carries the ids of the cells it judged; the runtime its sentence calls fastest has the
    lowest median of those cells, and every failed cell among them is named."""
    text = write_html(cells, tmp_path / "report.html", PROFILE).read_text()
    rows = re.findall(r'<tr data-cells="([^"]*)"><td class="shape">([^<]+)</td><td class="wrap verdict">([^<]+)</td>',
                      text)
    assert len(rows) == 4  # 2 batches x 2 lengths
    by_id = {c["cell_id"]: c for c in cells}
    for ids, shape, sentence in rows:
        sentence = html.unescape(sentence)
        judged = [by_id[i] for i in ids.split()]
        assert {f"{c['spec']['batch']}×{c['spec']['seq']}" for c in judged} == {html.unescape(shape)}
        ok = {c["spec"]["runtime"]: c["summary"]["median_ms"] for c in judged if c["status"] == "ok"}
        fastest = min(ok, key=ok.get)
        assert re.match(rf"{re.escape(fastest)}( is fastest|,| and )", sentence), sentence
        for c in judged:
            if c["status"] != "ok":
                assert f"{c['spec']['runtime']} ({c['reason']})" in sentence
