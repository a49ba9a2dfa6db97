"""A shape's memory does not depend on the shapes that ran before it in the same runner process."""

from conftest import FAST, cells_of, embedperf, require_runtime


def test_a_small_shape_reports_the_same_loop_memory_alone_and_beside_a_large_one(tmp_path):
    require_runtime("onnxruntime-python")
    figures = {}
    for label, seqs in (("alone", "16"), ("with 512", "512,16")):  # the large shape asked for first
        results = tmp_path / label.replace(" ", "-")
        proc = embedperf("run", "--runtimes", "onnxruntime-python", "--batch", "2", "--seq", seqs, *FAST,
                         "--results", str(results))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (small,) = [c for c in cells_of(results) if c["seq"] == 16]
        figures[label] = small["loop_peak_rss_mb"]
    # before the fix the 2×16 loop peak rose by ~40 MB once a 2×512 shape had grown the arena first
    assert abs(figures["alone"] - figures["with 512"]) < 8, figures
