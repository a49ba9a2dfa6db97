"""A shape's memory does not depend on the shapes that ran before it in the same runner process.

The loop peak is VmHWM after a reset to the current RSS just before the loop, so pools a larger shape grew
earlier in the same process would stay in a smaller shape's figure. Shapes therefore run smallest first in
every runner, whatever order the user asked for, and each cell states how its memory was measured.

(The effect itself is too noisy to assert end to end here: a 16×16 ONNX Runtime C++ shape alone reads
135–163 MB between processes, depending on what the allocator returned to the OS after the load.)
"""

import json

from conftest import FAST, cells_of, embedperf, require_runtime


def test_shapes_run_smallest_first_and_the_cell_says_how_memory_was_measured(results):
    require_runtime("onnxruntime-python")
    proc = embedperf("run", "--runtimes", "onnxruntime-python", "--batch", "8,2", "--seq", "512,16", *FAST,
                     "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in results.iterdir() if p.is_dir())
    request = json.loads(next((run_dir / "work").glob("*__onnxruntime-python__fp32__f0.request.json")).read_text())
    timed = [(s["batch"], s["seq"]) for s in request["shapes"] if s.get("scenario") != "accuracy"]
    assert timed == sorted(timed, key=lambda bs: bs[0] * bs[1]) == [(2, 16), (8, 16), (2, 512), (8, 512)]
    for cell in cells_of(results):
        doc = json.loads(next(run_dir.glob(f"*b{cell['batch']}__s{cell['seq']}.json")).read_text())
        method = doc["summary"]["memory_method"]
        assert method.startswith("VmHWM after clear_refs reset before the loop") and "smallest first" in method
        assert 0 < doc["summary"]["loop_peak_rss_mb"] <= doc["summary"]["peak_rss_mb"]
