#!/usr/bin/env python3
"""End-to-end check of the C++ runners' towers, inputs-by-name, stopping rule and
throughput scenario (docs/protocol.md).

Builds two tiny ONNX graphs with the onnx helper (no torch): an image tower
(`pixel_values` only) and a SigLIP-like text tower (`input_ids` only); uses a
prepared sentence-transformers ONNX artifact (`--model`, default: the first
`~/.cache/embedperf/models/*/onnx/model.onnx` whose reference says MiniLM) for
the throughput corpus and `timing.target_ci`. Every request and result is
validated against the JSON Schemas, embeddings are compared with
onnxruntime-python (max abs diff <= 1e-5), and the stopping rule is recomputed
in Python from the recorded samples.

    /work/main/.venv/bin/python native/cpp/tests/e2e_scenarios.py \
        [--bin-dir ~/.cache/embedperf/cpp-build] [--work /tmp/embedperf-cpp-e2e-scenarios] [--model M.onnx]

Exit status 0 when every check passes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "src" / "embedperf" / "protocol"
FAILURES: list[str] = []
DIM = 8


def check(cond: bool, what: str) -> None:
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


# ---------------------------------------------------------------- the protocol's stopping rule, in Python
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed: int):
        self.s = seed

    def next(self) -> int:
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def median(v) -> float:
    v = sorted(v)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def ci_within(samples, r: float, b: int = 1000) -> bool:
    n = len(samples)
    rng = SplitMix64(0x656D626564706572)
    ms = sorted(median([samples[rng.next() % n] for _ in range(n)]) for _ in range(b))
    m = median(samples)
    return ms[math.floor(0.025 * b)] >= m * (1 - r) and ms[math.ceil(0.975 * b) - 1] <= m * (1 + r)


# ---------------------------------------------------------------- graphs
def image_tower(path: Path) -> np.ndarray:
    """pixel_values [B,3,H,W] -> mean over H,W -> [B,3] @ W[3,DIM] -> L2 normalize."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((3, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values", "axes"], ["pooled4"], keepdims=0),
        helper.make_node("MatMul", ["pooled4", "w"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["sentence_embedding"], axis=1, p=2),
    ]
    g = helper.make_graph(
        nodes, "image_tower",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", DIM])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    return w


def text_tower(path: Path) -> None:
    """input_ids [B,S] (no attention mask) -> embedding table -> last position -> L2 normalize."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(2).standard_normal((500, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["h"], axis=0),          # [B,S,D]
        helper.make_node("Gather", ["h", "last"], ["h_last"], axis=1),              # [B,D]
        helper.make_node("LpNormalization", ["h_last"], ["sentence_embedding"], axis=1, p=2),
    ]
    g = helper.make_graph(
        nodes, "siglip_text_like",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", DIM])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array(-1, np.int64), "last")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))


def find_minilm() -> Path | None:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "embedperf" / "models"
    for d in sorted(root.glob("*")):
        try:
            meta = json.loads((d / "reference" / "embedperf_model.json").read_text())
        except (OSError, ValueError):
            continue
        if "MiniLM" in meta.get("model", "") and (d / "onnx" / "model.onnx").exists():
            return d / "onnx" / "model.onnx"
    return None


# ---------------------------------------------------------------- files
def text_workload(path: Path, batch: int, seq: int, seed: int, vocab: int = 500) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq + 1, size=batch).astype(np.int64)
    lengths[0] = seq
    ids = np.zeros((batch, seq), np.int64)
    mask = np.zeros((batch, seq), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, vocab, size=n)
        mask[i, :n] = 1
    save_file({"input_ids": ids, "attention_mask": mask, "lengths": lengths}, str(path))


def corpus(path: Path, batches, seed: int) -> None:
    """batches: [(rows, seq)]; rows padded to their batch's seq; order a permutation."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    t = {"batches": np.array(batches, np.int64)}
    for k, (rows, seq) in enumerate(batches):
        ids = np.zeros((rows, seq), np.int64)
        mask = np.zeros((rows, seq), np.int64)
        for r in range(rows):
            n = seq if r == 0 else int(rng.integers(2, seq + 1))
            ids[r, :n] = rng.integers(1000, 30000, size=n)
            ids[r, 0], ids[r, n - 1] = 101, 102
            mask[r, :n] = 1
        t[f"input_ids.{k}"], t[f"attention_mask.{k}"] = ids, mask
    t["order"] = rng.permutation(sum(r for r, _ in batches)).astype(np.int64)
    save_file(t, str(path))


def request(work: Path, name: str, runtime: str, fmt: str, artifact: str, shapes, *, family="bert", pooling="mean",
            modality=None, output_dim=DIM, timing=None) -> Path:
    model = {"name": name, "family": family, "pooling": pooling, "normalize": True, "output_dim": output_dim}
    if modality:
        model["modality"] = modality
    req = {
        "protocol": 1, "runtime": runtime, "model": model,
        "artifact": {"format": fmt, "path": artifact, "sha256": None},
        "shapes": shapes, "device": "cpu", "precision": "fp32",
        "threads": {"intra_op": 2, "inter_op": 1},
        "timing": timing or {"warmup": 2, "min_calls": 5, "min_seconds": 0.05, "max_seconds": 5.0},
    }
    p = work / f"{name}.request.json"
    p.write_text(json.dumps(req, indent=2))
    return p


def run(binary: Path, req: Path, rq, rs) -> dict | None:
    errs = list(rq.iter_errors(json.loads(req.read_text())))
    check(not errs, f"{req.name} validates against request.schema.json {[e.message for e in errs[:3]]}")
    res = req.with_name(req.name.replace(".request.json", ".result.json"))
    p = subprocess.run([str(binary), "--request", str(req), "--result", str(res)], capture_output=True, text=True,
                       timeout=300)
    check(p.returncode == 0, f"{binary.name} {req.name}: exit 0 (got {p.returncode}) {p.stderr.strip()[-300:]}")
    if not res.exists():
        check(False, f"{res.name} exists")
        return None
    doc = json.loads(res.read_text())
    errs = sorted(rs.iter_errors(doc), key=lambda e: list(e.path))
    for e in errs[:5]:
        print(f"    schema: {list(e.path)}: {e.message}")
    check(not errs, f"{res.name} validates against result.schema.json")
    return doc


def ort_session(model: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def main() -> int:
    ap = argparse.ArgumentParser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument("--bin-dir", type=Path, default=cache / "embedperf" / "cpp-build")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embedperf-cpp-e2e-scenarios"))
    ap.add_argument("--model", type=Path, default=None, help="a sentence-transformers model.onnx (MiniLM)")
    args = ap.parse_args()
    from jsonschema import Draft202012Validator
    from safetensors.numpy import load_file, save_file

    rq = Draft202012Validator(json.loads((SCHEMAS / "request.schema.json").read_text()))
    rs = Draft202012Validator(json.loads((SCHEMAS / "result.schema.json").read_text()))
    ort_bin, null_bin = args.bin_dir / "embedperf-ort-cpp", args.bin_dir / "embedperf-null-cpp"
    for b in (ort_bin, null_bin):
        if not b.exists():
            print(f"missing {b}: run native/cpp/build.sh first")
            return 2
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # ------------------------------------------------ image tower: pixel_values only
    print("== image tower (pixel_values)")
    img_model = work / "image.onnx"
    image_tower(img_model)
    rng = np.random.default_rng(0)
    for b, h in [(2, 16), (3, 24)]:
        save_file({"pixel_values": rng.standard_normal((b, 3, h, h)).astype(np.float32)}, str(work / f"img_{b}x{h}.safetensors"))
    shapes = [{"batch": b, "seq": h, "workload": str(work / f"img_{b}x{h}.safetensors"),
               "embeddings": str(work / f"img_emb_{b}x{h}.safetensors")} for b, h in [(2, 16), (3, 24)]]
    # a shape whose request disagrees with the image side fails alone
    shapes.append({"batch": 2, "seq": 224, "workload": str(work / "img_2x16.safetensors"),
                   "embeddings": str(work / "img_emb_bad.safetensors")})
    doc = run(ort_bin, request(work, "ort_image", "onnxruntime-cpp", "onnx", str(img_model), shapes, family="clip",
                               pooling="tower", modality="image"), rq, rs)
    if doc:
        sess = ort_session(img_model)
        print("   settings.inputs:", doc["settings"].get("inputs"))
        check(doc["settings"].get("inputs") == ["pixel_values"], "fed exactly the declared input pixel_values")
        for sh in doc["shapes"][:2]:
            check(sh["status"] == "ok" and sh["scenario"] == "latency", f"image {sh['batch'], sh['seq']}: ok, latency")
            if sh["status"] != "ok":
                print("   error:", sh["error"])
                continue
            px = load_file(str(work / f"img_{sh['batch']}x{sh['seq']}.safetensors"))
            want = sess.run(["sentence_embedding"], {"pixel_values": px["pixel_values"]})[0]
            got = load_file(sh["embeddings"])["sentence_embedding"]
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            check(diff <= 1e-5, f"image {sh['batch'], sh['seq']}: {got.shape} max abs diff vs python {diff:.2e}")
        bad = doc["shapes"][2]
        print("   mismatched side:", bad["error"])
        check(bad["status"] == "failed" and "224" in (bad["error"] or ""), "image side != request seq: shape failed")

    # a text workload for the image graph: the declared input is missing -> shape failure naming it
    print("== declared input missing from the workload")
    text_workload(work / "txt_2x8.safetensors", 2, 8, seed=3)
    doc = run(ort_bin, request(work, "ort_image_text", "onnxruntime-cpp", "onnx", str(img_model),
                               [{"batch": 2, "seq": 8, "workload": str(work / "txt_2x8.safetensors"),
                                 "embeddings": str(work / "x.safetensors")}], family="clip", pooling="tower"), rq, rs)
    if doc:
        sh = doc["shapes"][0]
        print("   error:", sh["error"])
        check(sh["status"] == "failed" and "pixel_values" in (sh["error"] or ""), "shape failed naming pixel_values")

    # ------------------------------------------------ text tower without attention_mask
    print("== siglip-like text tower (input_ids only)")
    txt_model = work / "text.onnx"
    text_tower(txt_model)
    doc = run(ort_bin, request(work, "ort_text_ids", "onnxruntime-cpp", "onnx", str(txt_model),
                               [{"batch": 2, "seq": 8, "workload": str(work / "txt_2x8.safetensors"),
                                 "embeddings": str(work / "txt_emb_2x8.safetensors")}], family="siglip",
                               pooling="tower", modality="text"), rq, rs)
    if doc:
        sh = doc["shapes"][0]
        check(doc["settings"].get("inputs") == ["input_ids"], f"fed exactly input_ids ({doc['settings'].get('inputs')})")
        check(sh["status"] == "ok", f"ok ({sh['error']})")
        if sh["status"] == "ok":
            w = load_file(str(work / "txt_2x8.safetensors"))
            want = ort_session(txt_model).run(["sentence_embedding"], {"input_ids": w["input_ids"]})[0]
            got = load_file(sh["embeddings"])["sentence_embedding"]
            check(float(np.abs(got - want).max()) <= 1e-6, "embeddings match python")

    # ------------------------------------------------ null runner: image and corpus workloads
    print("== null runner: image + corpus")
    corpus(work / "corpus_small.safetensors", [(4, 6), (4, 9), (2, 5)], seed=4)
    doc = run(null_bin, request(work, "null_mixed", "null-cpp", "none", "", [
        {"batch": 3, "seq": 24, "workload": str(work / "img_3x24.safetensors"), "embeddings": str(work / "n_img.safetensors")},
        {"batch": 4, "seq": 9, "workload": str(work / "corpus_small.safetensors"),
         "embeddings": str(work / "n_corpus.safetensors"), "scenario": "throughput"},
    ], modality=None, output_dim=DIM, timing={"warmup": 1, "min_calls": 5, "min_seconds": 0.01, "max_seconds": 5.0,
                                              "max_calls": 100000}), rq, rs)
    # the image shape needs modality image: run it on its own
    doc_img = run(null_bin, request(work, "null_image", "null-cpp", "none", "", [
        {"batch": 3, "seq": 24, "workload": str(work / "img_3x24.safetensors"), "embeddings": str(work / "n_img.safetensors")},
    ], family="clip", pooling="tower", modality="image"), rq, rs)
    if doc and doc_img:
        check(doc["shapes"][0]["status"] == "failed" and "input_ids" in doc["shapes"][0]["error"],
              f"image workload with modality text fails: {doc['shapes'][0]['error']}")
        e = load_file(str(work / "n_img.safetensors"))["sentence_embedding"]
        check(doc_img["shapes"][0]["status"] == "ok" and e.shape == (3, DIM) and not e.any(), "null image: zeros [3, D]")
        sh = doc["shapes"][1]
        e = load_file(str(work / "n_corpus.safetensors"))["sentence_embedding"]
        check(sh["status"] == "ok" and e.shape == (10, DIM) and not e.any() and sh["items"] == 10,
              f"null corpus: zeros [10, D], items {sh.get('items')}")
        check(len(sh["samples_ns"]) == 3 * len(sh["passes_ns"]) and sh["stop_rule"] == "min_reached",
              f"null corpus: {len(sh['passes_ns'])} passes, {len(sh['samples_ns'])} calls, {sh['stop_rule']}")

    # ------------------------------------------------ real model: throughput corpus + target_ci
    model = args.model or find_minilm()
    if model is None or not model.exists():
        print("== no MiniLM ONNX artifact found: skipping the real-model checks")
    else:
        print(f"== throughput corpus on {model}")
        batches = [(3, 12), (3, 20), (3, 7), (1, 16)]
        corpus(work / "corpus.safetensors", batches, seed=5)
        doc = run(ort_bin, request(work, "ort_corpus", "onnxruntime-cpp", "onnx", str(model), [
            {"batch": 3, "seq": 20, "workload": str(work / "corpus.safetensors"),
             "embeddings": str(work / "corpus_emb.safetensors"), "scenario": "throughput"}],
            output_dim=384, timing={"warmup": 3, "min_calls": 1000, "min_seconds": 0.3, "max_seconds": 20.0,
                                    "target_ci": 0.01}), rq, rs)
        if doc:
            sh = doc["shapes"][0]
            check(sh["status"] == "ok", f"ok ({sh['error']})")
            k = len(batches)
            print(f"   stop {sh['stop_rule']}, passes {len(sh['passes_ns'])}, calls {len(sh['samples_ns'])}, "
                  f"pass median {np.median(sh['passes_ns']) / 1e6:.2f} ms, items {sh['items']}")
            check(sh["scenario"] == "throughput" and sh["items"] == 10 and len(sh["warmup_ns"]) == 3,
                  "scenario throughput, items 10, 3 warm-up calls")
            check(sh["stop_rule"] == "min_reached" and len(sh["samples_ns"]) == k * len(sh["passes_ns"])
                  and sh["loop_s"] >= 0.3, "min_reached after full passes (samples = passes * K)")
            check(sh["target_ci"] is None, "target_ci does not apply to passes")
            check(all(p >= sum(sh["samples_ns"][i * k:(i + 1) * k]) for i, p in enumerate(sh["passes_ns"])),
                  "each pass's wall time >= the sum of its calls")
            c = load_file(str(work / "corpus.safetensors"))
            sess = ort_session(model)
            want = np.concatenate([sess.run(["sentence_embedding"], {"input_ids": c[f"input_ids.{i}"],
                                                                     "attention_mask": c[f"attention_mask.{i}"]})[0]
                                   for i in range(k)])
            got = load_file(str(work / "corpus_emb.safetensors"))["sentence_embedding"]
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            check(diff <= 1e-5, f"corpus embeddings {got.shape} in feed order, max abs diff vs python {diff:.2e}")

        print("== target_ci on the real model")
        text_workload(work / "m_4x32.safetensors", 4, 32, seed=6, vocab=30000)
        doc = run(ort_bin, request(work, "ort_ci", "onnxruntime-cpp", "onnx", str(model), [
            {"batch": 4, "seq": 32, "workload": str(work / "m_4x32.safetensors"),
             "embeddings": str(work / "ci_emb.safetensors")}],
            output_dim=384, timing={"warmup": 3, "min_calls": 5, "min_seconds": 0.0, "max_seconds": 20.0,
                                    "target_ci": 0.05}), rq, rs)
        if doc:
            sh = doc["shapes"][0]
            n = len(sh["samples_ns"])
            print(f"   stop {sh['stop_rule']} after {n} calls, {sh['ci_checks']} checks, "
                  f"median {median(sh['samples_ns']) / 1e6:.2f} ms")
            check(sh["status"] == "ok" and sh["target_ci"] == 0.05 and sh["ci_checks"] >= 1, "target_ci, ci_checks recorded")
            # with min_seconds 0 the checks are exactly at 10, then ceil(1.1 n)
            points, p = [], 10
            while p <= n:
                points.append(p)
                p = (11 * p + 9) // 10
            check(sh["ci_checks"] == len(points) and (sh["stop_rule"] != "ci_reached" or points[-1] == n),
                  f"checks at {points[:6]}...: {len(points)} == ci_checks {sh['ci_checks']}")
            s = sh["samples_ns"]
            if sh["stop_rule"] == "ci_reached":
                check(ci_within(s, 0.05), "Python's rule agrees: the CI is within +-5% at the stop")
                check(all(not ci_within(s[:q], 0.05) for q in points[:-1]), "and not at any earlier check")
            else:
                check(all(not ci_within(s[:q], 0.05) for q in points),
                      f"{sh['stop_rule']}: Python's rule agrees that no check reached the target")

    print()
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} check(s)")
        for f in FAILURES:
            print("  -", f)
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
