"""What the terminal shows (`run`'s table, `report DIR` on stdout): warnings marked in the rows and written under
the table, the frameworks' versions, and setups (precision, device, run) never mixed in one table."""

from __future__ import annotations

import json
from pathlib import Path

from cell_docs import doc, shape_docs
from conftest import embedperf

from embedperf.report.markdown import table

NOISY = "noisy (every fork): CV 510% > 5%"
BUSY = "busy machine (fork 2 of 3): other processes used 82% of the CPU time (2.3 CPU-s)"


def lines_with(text: str, needle: str) -> list[str]:
    return [x for x in text.splitlines() if needle in x]


def test_warnings_are_marked_in_the_row_and_written_under_the_table():
    cells = [doc("torch", 30.0, warnings=[NOISY, BUSY]), doc("openvino", 10.0, seed=2),
             doc("onnxruntime-rust", 11.0, seed=3, warnings=["slow first call (every fork): 13.0 ms, 30× the median"])]
    text = table(cells)
    (torch,) = lines_with(text, "| torch | 1×128 |")
    (rust,) = lines_with(text, "| onnxruntime-rust | 1×128 |")
    (openvino,) = lines_with(text, "| openvino | 1×128 |")
    assert "| ok ⚠1 |" in torch and "| ok ⚠2 |" in rust and "⚠" not in openvino
    assert "Warnings (3 in 2 cell(s)):" in text
    assert f"- ⚠1 bge-m3 torch 1×128: {NOISY}; {BUSY}" in text
    assert "- ⚠2 bge-m3 onnxruntime-rust 1×128: slow first call" in text
    assert text.index("| torch | 1×128 |") < text.index("Warnings (3")


def test_the_frameworks_versions_are_printed():
    text = table(shape_docs({"torch": 30.0, "onnxruntime-python": 12.0, "onnxruntime-rust": 10.0, "openvino": 15.0}))
    (line,) = lines_with(text, "versions: ")
    assert "torch: torch 2.8.0 (transformers 4.56.0)" in line
    assert "onnxruntime-python: onnxruntime 1.22.0 (python binding)" in line
    assert "onnxruntime-rust: onnxruntime 1.22.0 (ort 2.0.0-rc.10)" in line
    assert "openvino: openvino 2025.2.0" in line
    assert "embedperf 0.1.0 @ 0123456789, python 3.11.7" in line


def test_precisions_devices_and_runs_get_their_own_tables():
    fp32 = shape_docs({"torch": 30.0, "openvino": 10.0}, run_id="RUN-A")
    bf16 = shape_docs({"torch": 20.0, "openvino": 8.0}, precision="bf16", run_id="RUN-B")
    cuda = shape_docs({"torch": 2.0, "onnxruntime-python": 1.5}, device="cuda", run_id="RUN-C")
    again = [doc("openvino", 11.0, run_id="RUN-D", seed=9)]  # fp32 cpu again, from another run
    text = table(fp32 + bf16 + cuda + again)
    headings = [x for x in text.splitlines() if x.startswith("**fp32") or x.startswith("**bf16")]
    assert headings == ["**fp32, cpu, 2 thread(s), Test CPU 9000 (2 CPUs)**",
                        "**fp32, cuda, 2 thread(s), Test CPU 9000 (2 CPUs)**",
                        "**bf16, cpu, 2 thread(s), Test CPU 9000 (2 CPUs)**"]
    # one header row per table; the fp32 cpu table holds two runs, so it says which row came from which
    assert len(lines_with(text, "| model | runtime | batch×seq | status |")) == 3
    assert len(lines_with(text, "| status | run | median ms |")) == 1
    assert lines_with(text, "| openvino | 1×128 | ok | RUN-D |")
    fp32_table = text[text.index("**fp32, cpu"):text.index("**fp32, cuda")]
    assert "RUN-B" not in fp32_table and "RUN-C" not in fp32_table


def write_run(folder: Path, cells: list[dict]) -> Path:
    folder.mkdir(parents=True)
    for c in cells:
        (folder / f"{c['cell_id']}.json").write_text(json.dumps(c))
    return folder


def test_report_on_stdout_leads_with_verdicts_and_carries_warnings_and_versions(tmp_path):
    a = write_run(tmp_path / "results" / "RUN-A", [doc("torch", 30.0, warnings=[NOISY]), doc("openvino", 10.0, seed=2)])
    b = write_run(tmp_path / "results" / "RUN-B", shape_docs({"torch": 20.0, "openvino": 8.0}, precision="bf16",
                                                              run_id="RUN-B"))
    proc = embedperf("report", str(a), str(b), timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("## Verdicts") < out.index("| model | runtime |")
    assert "openvino is fastest, 3.00× faster than torch fp32" in out
    assert "openvino is fastest at bf16" in out
    assert "| ok ⚠1 |" in out and f"- ⚠1 bge-m3 torch 1×128 [fp32]: {NOISY}" in out
    assert "versions: torch: torch 2.8.0 (transformers 4.56.0)" in out
    assert "**bf16, cpu, 2 thread(s)" in out

    flat = embedperf("report", str(a), "--format", "json", timeout=300)
    assert flat.returncode == 0 and [c["runtime"] for c in json.loads(flat.stdout)] in (["torch", "openvino"],
                                                                                       ["openvino", "torch"])
    judged = embedperf("report", str(a), str(b), "--format", "verdicts-json", timeout=300)
    assert judged.returncode == 0, judged.stderr
    data = json.loads(judged.stdout)
    assert [(v["precision"], v["fastest"]) for v in data["verdicts"]] == [("fp32", ["openvino"]),
                                                                          ("bf16", ["openvino"])]
    assert {"rules", "headlines", "verdicts", "models"} <= set(data)
    bad = embedperf("report", str(a), "--format", "yaml", timeout=300)
    assert bad.returncode == 2 and "verdicts-json" in bad.stderr
