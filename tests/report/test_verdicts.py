"""The verdict logic on fixed cell documents: wins, ties, failures and skips, baselines, and each sentence
checked against the cells it came from."""

from __future__ import annotations

import json
import re

import pytest

from cell_docs import doc, shape_docs

from embedperf.measure.stats import ratio_ci
from embedperf.report.verdicts import RULES, TIE_BAND, fmt_ratio, headlines, heatmap, to_json, verdicts
from embedperf.results.store import flatten, fork_series


def only(cells):
    (v,) = verdicts(cells)
    return v


def test_a_clear_win_names_the_runtime_and_its_speedup_with_the_ratio_ci():
    cells = shape_docs({"torch": 30.0, "onnxruntime-python": 12.0, "onnxruntime-rust": 10.0, "openvino": 15.0})
    v = only(cells)
    assert v.fastest == ["onnxruntime-rust"] and not v.tie
    torch, rust = cells[0], cells[2]
    ratio, low, high = ratio_ci(fork_series(torch), fork_series(rust))
    e = v.entry("onnxruntime-rust")
    assert (e.speedup.ratio, e.speedup.low, e.speedup.high) == (ratio, low, high)
    assert ratio == pytest.approx(3.0, rel=0.02) and low < ratio < high
    assert f"onnxruntime-rust is fastest, {fmt_ratio(ratio)}× faster than torch fp32 " \
           f"({fmt_ratio(low)}–{fmt_ratio(high)}×)" in v.sentence
    # the runner-up and how much slower it is, from its own ratio to the winner
    nxt = ratio_ci(fork_series(cells[1]), fork_series(rust))
    assert f"next onnxruntime-python takes {fmt_ratio(nxt[0])}× ({fmt_ratio(nxt[1])}–{fmt_ratio(nxt[2])}×)" \
           in v.sentence


def test_a_difference_inside_the_noise_is_a_tie_not_a_win():
    # 1% apart with 30% noise and few calls: the ratio's CI spans 1
    cells = [doc("torch", 30.0, seed=1), doc("onnxruntime-python", 10.1, spread=0.3, n=8, seed=2),
             doc("onnxruntime-rust", 10.0, spread=0.3, n=8, seed=3)]
    v = only(cells)
    assert v.tie and set(v.fastest) == {"onnxruntime-python", "onnxruntime-rust"}
    loser = v.entry(v.fastest[1])
    assert loser.vs_fastest.low <= 1 + TIE_BAND
    assert "tie for fastest" in v.sentence and " is fastest" not in v.sentence
    assert "inside the noise" in v.sentence


def test_a_tiny_but_certain_difference_is_still_a_tie_below_the_band():
    # 1% apart with 0.1% noise: the CI excludes 1 but lies within the 2% band
    cells = [doc("torch", 30.0, seed=1), doc("onnxruntime-python", 10.1, spread=0.001, n=200, seed=2),
             doc("onnxruntime-rust", 10.0, spread=0.001, n=200, seed=3)]
    v = only(cells)
    python = v.entry("onnxruntime-python").vs_fastest
    assert python.low > 1.0 and python.low <= 1 + TIE_BAND
    assert v.tie


def test_process_modes_make_a_tie_even_when_medians_differ():
    """One runtime's forks landed fast, fast, slow: its CI spans both modes, so a 10% lead is not a win."""
    cells = [doc("torch", 30.0, seed=1), doc("openvino", 10.0, fork_medians=[9.0, 9.1, 12.0], spread=0.003, seed=2),
             doc("onnxruntime-rust", 10.0, fork_medians=[10.0, 10.1, 10.05], spread=0.003, seed=3)]
    v = only(cells)
    assert v.tie, v.sentence


def test_failed_and_skipped_cells_are_listed_with_their_reasons_and_never_win():
    cells = [doc("torch", 30.0, seed=1), doc("onnxruntime-python", 12.0, seed=2),
             doc("candle", 1.0, status="failed", reason="runner crashed (exit 139)"),
             doc("openvino", 1.0, status="skipped", reason="bf16: no native kernels on this CPU")]
    v = only(cells)
    assert v.fastest == ["onnxruntime-python"]
    assert "Failed: candle (runner crashed (exit 139))" in v.sentence
    assert "Skipped: openvino (bf16: no native kernels on this CPU)" in v.sentence
    assert {e.runtime for e in v.not_ok} == {"candle", "openvino"}


def test_no_baseline_says_why_there_is_no_speedup():
    cells = [doc("torch", 30.0, status="failed", reason="out of memory"), doc("onnxruntime-rust", 10.0, seed=2)]
    v = only(cells)
    assert v.fastest == ["onnxruntime-rust"] and v.entry("onnxruntime-rust").speedup is None
    assert "speedup unknown: the torch fp32 cell is failed (out of memory)" in v.sentence
    v = only([doc("onnxruntime-rust", 10.0, seed=2), doc("openvino", 20.0, seed=3)])
    assert "no torch fp32 cell at this shape to compare with" in v.sentence


def test_every_cell_failed():
    v = only([doc("torch", status="failed", reason="boom"), doc("openvino", status="skipped", reason="no IR")])
    assert v.fastest == [] and v.sentence.startswith("No runtime measured this shape")
    assert "Failed: torch (boom)" in v.sentence and "Skipped: openvino (no IR)" in v.sentence


def test_torch_fastest_is_said_without_a_speedup_over_itself():
    v = only(shape_docs({"torch": 10.0, "openvino": 20.0}))
    assert v.fastest == ["torch"]
    assert v.sentence.startswith("torch is fastest; next openvino takes 2.")
    assert v.entry("torch").speedup.ratio == 1.0


def test_reduced_precision_is_compared_with_torch_fp32_and_kept_apart():
    fp32 = shape_docs({"torch": 30.0, "openvino": 15.0})
    int8 = [doc("openvino", 6.0, precision="int8", seed=5,
                accuracy={"min_cosine": 0.991, "recall_at_10": 0.97, "spearman": 0.995}),
            doc("onnxruntime-python", 7.5, precision="int8", seed=6)]  # no accuracy fields: said as much
    vs = verdicts(fp32 + int8)
    assert [v.setup.precision for v in vs] == ["fp32", "int8"]  # separate verdicts, never one mixed ranking
    v = vs[1]
    assert v.fastest == ["openvino"]
    ratio, low, high = ratio_ci(fork_series(fp32[0]), fork_series(int8[0]))
    assert v.entry("openvino").speedup.ratio == ratio and ratio == pytest.approx(5.0, rel=0.03)
    assert "openvino is fastest at int8, 5." in v.sentence and "faster than torch fp32" in v.sentence
    assert "openvino int8 accuracy vs fp32: recall@10 0.970, Spearman 0.9950, min cosine 0.99100" in v.sentence


def test_a_slower_reduced_precision_says_slower():
    v = verdicts([doc("torch", 10.0), doc("openvino", 20.0, precision="bf16", seed=3)])[1]
    assert "openvino is fastest at bf16, 2.0" in v.sentence and "× slower than torch fp32" in v.sentence


def test_setups_never_mix_threads_machines_or_devices():
    a = shape_docs({"torch": 30.0, "openvino": 10.0})
    b = shape_docs({"torch": 20.0, "openvino": 5.0}, threads=8)
    c = shape_docs({"torch": 2.0, "onnxruntime-python": 1.0}, device="cuda")
    d = shape_docs({"torch": 25.0, "openvino": 12.0}, machine={"cpu_model": "Other CPU", "cpus_available": 8})
    vs = verdicts(a + b + c + d)
    assert len(vs) == 4
    keys = {(v.setup.device, v.setup.threads, v.setup.machine.cpu_model) for v in vs}
    assert keys == {("cpu", 2, "Test CPU 9000"), ("cpu", 8, "Test CPU 9000"), ("cuda", 2, "Test CPU 9000"),
                    ("cpu", 2, "Other CPU")}
    for v in vs:  # each speedup divides by the torch cell of its own setup
        base = next(d_ for d_ in a + b + c + d if d_["spec"]["runtime"] == "torch"
                    and d_["spec"]["threads"]["intra_op"] == v.setup.threads and d_["spec"]["device"] == v.setup.device
                    and d_["machine"]["cpu_model"] == v.setup.machine.cpu_model)
        assert v.baseline.median_ms == base["summary"]["median_ms"]


def test_the_newest_run_wins_a_repeated_cell():
    old = shape_docs({"torch": 30.0, "openvino": 10.0}, run_id="OLD", created="2026-01-01T00:00:00+00:00")
    new = shape_docs({"torch": 30.0, "openvino": 40.0}, run_id="NEW", created="2026-02-01T00:00:00+00:00")
    v = only(old + new)
    assert v.fastest == ["torch"]


def test_leanest_with_a_memory_tie():
    cells = [doc("torch", 30.0, rss_mb=900.0, seed=1), doc("onnxruntime-rust", 10.0, rss_mb=400.0, seed=2),
             doc("openvino", 12.0, rss_mb=410.0, seed=3), doc("candle", 20.0, rss_mb=600.0, seed=4)]
    v = only(cells)
    assert v.leanest == ["onnxruntime-rust", "openvino"]
    assert "Leanest (tied) onnxruntime-rust (400 MB), openvino (410 MB)" in v.sentence
    v = only([doc("torch", 30.0, rss_mb=900.0), doc("openvino", 12.0, rss_mb=400.0, seed=3)])
    assert "Leanest openvino (400 MB peak RSS)" in v.sentence


def test_throughput_cells_are_judged_on_whole_passes():
    cells = [doc("torch", 2000.0, order="sorted", batch=32, seq=512, seed=1),
             doc("openvino", 1000.0, order="sorted", batch=32, seq=512, seed=2)]
    v = only(cells)
    assert v.of == "passes" and v.shape.label == "b32 sorted"
    assert v.entry("openvino").speedup.ratio == pytest.approx(2.0, rel=0.02)


SENTENCE_RATIO = re.compile(r"(\S+) is fastest(?: at \w+)?, ([\d.]+)× (faster|slower) than torch fp32 "
                            r"\(([\d.]+)–([\d.]+)×\)")


def test_every_sentence_matches_the_cells_it_came_from():
    """Parse each verdict sentence back and check it against the documents: the named runtime has the lowest
    median, and the speedup and CI printed are ratio_ci of exactly those two cells."""
    cells = []
    for i, (b, s) in enumerate([(1, 16), (1, 128), (8, 128), (32, 128)]):
        cells += shape_docs({"torch": 3.0 * b * s / 16, "onnxruntime-python": 1.2 * b * s / 16,
                             "onnxruntime-rust": 1.0 * b * s / 16, "openvino": 1.6 * b * s / 16}, batch=b, seq=s,
                            spread=0.005)
    for v in verdicts(cells):
        m = SENTENCE_RATIO.search(v.sentence)
        assert m, v.sentence
        runtime = m.group(1)
        mine = [c for c in cells if c["spec"]["batch"] == v.shape.batch and c["spec"]["seq"] == v.shape.seq]
        by_rt = {c["spec"]["runtime"]: c for c in mine}
        assert runtime == min(by_rt, key=lambda rt: by_rt[rt]["summary"]["median_ms"])
        ratio, low, high = ratio_ci(fork_series(by_rt["torch"]), fork_series(by_rt[runtime]))
        assert m.group(2) == fmt_ratio(ratio) and m.group(4) == fmt_ratio(low) and m.group(5) == fmt_ratio(high)


def test_headline_heatmap_and_json():
    cells = []
    for b in (1, 8):
        cells += shape_docs({"torch": 30.0 * b, "onnxruntime-rust": 10.0 * b, "openvino": 12.0 * b}, batch=b)
    cells.append(doc("candle", status="failed", reason="boom", batch=8))
    vs = verdicts(cells)
    (h,) = headlines(vs)
    assert h.best == "onnxruntime-rust" and h.wins["onnxruntime-rust"] == 2
    assert h.sentence.startswith("onnxruntime-rust fastest or tied at 2 of 2 shape(s), 3.00× the speed of torch fp32")
    assert "1 cell(s) failed" in h.sentence
    (grid,) = heatmap(vs)
    assert grid["columns"] == [("bge-m3 (twin)", "1×128"), ("bge-m3 (twin)", "8×128")]
    assert grid["rows"][0] == ("torch", "fp32")
    cell = grid["cells"][(("onnxruntime-rust", "fp32"), ("bge-m3 (twin)", "8×128"))]
    assert cell["fastest"] and cell["ratio"] == pytest.approx(3.0, rel=0.02) and cell["low"] < 3.0 < cell["high"]
    assert grid["cells"][(("candle", "fp32"), ("bge-m3 (twin)", "8×128"))]["status"] == "failed"
    data = json.loads(json.dumps(to_json(cells)))
    assert data["rules"] == RULES and data["tie_band"] == TIE_BAND
    assert [v["shape"] for v in data["verdicts"]] == ["1×128", "8×128"]
    assert data["verdicts"][1]["fastest"] == ["onnxruntime-rust"]
    assert data["headlines"][0]["best"] == "onnxruntime-rust"


def test_flat_rows_carry_no_forks_and_get_no_verdict():
    assert verdicts([flatten(c) for c in shape_docs({"torch": 3.0, "openvino": 1.0})]) == []
