"""The command line with snapshots: a local MiniLM is the packaged one, mistakes are one line (exit 2), and real
texts (--text) are tokenized by the model's tokenizer with the time that costs shown apart from model time."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import FAST, cells_of, embedperf
from snapshot_support import minilm_folder, snapshot  # noqa: F401 (fixture)

SENTENCES = ["A man is eating food.", "A man is riding a white horse on an enclosed ground.",
             "The new movie is awesome and everyone in the theatre loved it, even the critics.",
             "Two dogs play in the snow.", "A woman is playing violin."]


def run(results, *args):
    proc = embedperf("run", "--runtimes", "torch,onnxruntime-python", "--batch", "1,3", *args, *FAST,
                     "--results", str(results), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = next(p for p in results.iterdir() if p.is_dir())
    return run_dir, proc.stdout


def test_a_local_minilm_folder_gives_the_same_cells_as_the_package(tmp_path):
    package, _ = run(tmp_path / "package", "--source", "package", "--seq", "16")
    local, _ = run(tmp_path / "local", "--source", "local", "--path", str(minilm_folder()), "--seq", "16")
    a, b = cells_of(package), cells_of(local)

    def key(c):
        return c["runtime"], c["batch"], c["seq"]

    assert sorted(map(key, a)) == sorted(map(key, b)) and len(a) == 4
    by_key = {key(c): c for c in a}
    for cell in b:
        other = by_key[key(cell)]
        assert cell["model"] == other["model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert (cell["source"], other["source"]) == ("local", "package")
        assert cell["status"] == other["status"] == "ok"
        assert cell["weights_sha256"] == other["weights_sha256"]
        assert cell["min_cosine"] >= 0.9999
        runtime, batch, seq = key(cell)
        emb = {d: load_file(str(next((run_dir / "embeddings").glob(f"*__{runtime}__*b{batch}__s{seq}.f0.safetensors"))))
               ["sentence_embedding"] for d, run_dir in (("package", package), ("local", local))}
        assert np.max(np.abs(emb["package"] - emb["local"])) <= 1e-6  # same model, same inputs


def _edited(tmp_path, snapshot, edit):
    folder = tmp_path / "snap"
    shutil.copytree(snapshot("bert", ("mean",)), folder)
    edit(folder)
    return folder


def _set(path, **changes):
    def edit(folder):
        doc = json.loads((folder / path).read_text())
        doc.update(changes)
        (folder / path).write_text(json.dumps(doc))
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("config.json", model_type="mpnet", architectures=["MPNetModel"]),
     "architecture 'mpnet' (MPNetModel) is not one embedperf implements; supported: bert, xlm-roberta, gemma3_text"),
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (lambda f: (f / "model.safetensors").unlink(), "holds no weights"),
    (_set("1_Pooling/config.json", pooling_mode="median"), "unknown pooling mode 'median'"),
], ids=["unsupported-architecture", "missing-config", "missing-weights", "unknown-pooling"])
def test_a_snapshot_embedperf_cannot_run_is_one_line_and_exit_2(edit, message, snapshot, tmp_path):
    folder = _edited(tmp_path, snapshot, edit)
    proc = embedperf("run", "--source", "local", "--path", str(folder), "--runtimes", "torch",
                     "--results", str(tmp_path / "results"))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--text", "no/such/file.txt"], "--text no/such/file.txt: no such file"),
    (["--model", "BAAI/bge-m3", "--source", "tiny", "--text", "TEXTS"], "--text needs BAAI/bge-m3's tokenizer"),
    (["--text", "TEXTS", "--scenario", "throughput"], "--text feeds the latency scenario"),
    (["--model", "openai/clip-vit-base-patch16", "--text", "TEXTS"], "--text is for text embedding models"),
])
def test_text_mistakes_are_one_line(args, message, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SENTENCES))
    args = [str(texts) if a == "TEXTS" else a for a in args]
    proc = embedperf("run", *args, "--runtimes", "torch", "--results", str(tmp_path / "results"))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_real_text_run_shows_tokenization_apart_from_model_time(tmp_path):
    """The MiniLM run with --text reads real sentences through its tokenizer;
    each cell's workload says so and carries the tokenization time, which the table and the report show apart."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SENTENCES) + "\n")
    run_dir, stdout = run(tmp_path / "results", "--text", str(texts))
    docs = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json")) if p.name != "run.json"]
    assert len(docs) == 4
    for doc in docs:
        assert doc["status"] == "ok", doc["reason"]
        workload = doc["spec"]["workload"]
        assert workload["kind"] == "texts" and workload["lines"] == len(SENTENCES)
        assert doc["spec"]["seq"] == max(workload["lengths"])  # padded to the batch's longest text
        assert doc["summary"]["tokenize_ms_batch"] > 0
    assert "tokeniz" in stdout  # the table printed by `run`
    report = tmp_path / "report.md"
    proc = embedperf("report", str(run_dir), "--markdown-out", str(report))
    assert proc.returncode == 0 and "tokeniz" in report.read_text()
