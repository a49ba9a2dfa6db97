#!/usr/bin/env python3
"""End-to-end check of the C++ runners against the protocol.

Builds a tiny random BERT embedding graph (BertModel + masked mean pooling + L2
normalize) exported to ONNX, writes workloads and requests, runs
embedperf-ort-cpp and embedperf-null-cpp, validates every result against
src/embedperf/protocol/result.schema.json (and every request against
request.schema.json), and compares the C++ embeddings with onnxruntime-python's
(max abs diff <= 1e-5).

    /work/main/.venv/bin/python native/cpp/tests/e2e_check.py \
        [--bin-dir ~/.cache/embedperf/cpp-build] [--work /tmp/embedperf-cpp-e2e]

Exit status 0 when every check passes. Scratch files go under --work.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "src" / "embedperf" / "protocol"
OUTPUT_DIM = 32
FAILURES: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


# ---------------------------------------------------------------- artifacts
def export_model(path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=500, hidden_size=OUTPUT_DIM, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    bert = BertModel(cfg, add_pooling_layer=False).eval()

    class Embed(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, input_ids, attention_mask):
            h = self.enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = Embed(bert).eval()
    ids = torch.randint(1, 500, (2, 8), dtype=torch.int64)
    mask = torch.ones(2, 8, dtype=torch.int64)
    kw = dict(input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"], opset_version=17)
    try:
        torch.onnx.export(model, (ids, mask), str(path), dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "sentence_embedding": {0: "batch"}}, **kw)
    except Exception as e:  # legacy exporter gone: use the dynamo exporter
        print(f"  (legacy exporter failed: {e!r}; using dynamo)")
        b, s = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=128)
        torch.onnx.export(model, (ids, mask), str(path), dynamo=True, external_data=False,
                          dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}, **kw)


def write_workload(path: Path, batch: int, seq: int, seed: int) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq + 1, size=batch).astype(np.int64)
    lengths[0] = seq  # at least one full row
    ids = np.zeros((batch, seq), np.int64)
    mask = np.zeros((batch, seq), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 500, size=n)
        mask[i, :n] = 1
    save_file({"input_ids": ids, "attention_mask": mask, "lengths": lengths}, str(path))


def request(work: Path, name: str, runtime: str, fmt: str, artifact: str, shapes, *, truncate=None, device="cpu",
            ort=None, fault=None, timing=None) -> Path:
    req = {
        "protocol": 1,
        "runtime": runtime,
        "model": {"name": "tiny-bert", "family": "bert", "pooling": "mean", "normalize": True,
                  "output_dim": OUTPUT_DIM, "truncate_dim": truncate},
        "artifact": {"format": fmt, "path": artifact, "sha256": None},
        "shapes": [{"batch": b, "seq": s, "workload": str(work / f"w_{b}x{s}.safetensors"),
                    "embeddings": str(work / f"{name}_emb_{b}x{s}.safetensors")} for b, s in shapes],
        "device": device,
        "precision": "fp32",
        "threads": {"intra_op": 2, "inter_op": 1},
        "timing": timing or {"warmup": 2, "min_calls": 5, "min_seconds": 0.05, "max_seconds": 5.0},
    }
    if ort is not None:
        req["onnxruntime"] = ort
    if fault is not None:
        req["fault"] = fault
    p = work / f"{name}.request.json"
    p.write_text(json.dumps(req, indent=2))
    return p


def run(binary: Path, req: Path, timeout: float = 120, preexec=None):
    res = req.with_name(req.name.replace(".request.json", ".result.json"))
    if res.exists():
        res.unlink()
    t = time.time()
    p = subprocess.Popen([str(binary), "--request", str(req), "--result", str(res)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=preexec, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return "timeout", res, err, time.time() - t
    return p.returncode, res, err, time.time() - t


# ---------------------------------------------------------------- checks
def validators():
    from jsonschema import Draft202012Validator

    rq = Draft202012Validator(json.loads((SCHEMAS / "request.schema.json").read_text()))
    rs = Draft202012Validator(json.loads((SCHEMAS / "result.schema.json").read_text()))
    return rq, rs


def schema_ok(validator, path: Path, what: str) -> dict | None:
    if not path.exists():
        check(False, f"{what}: {path.name} exists")
        return None
    doc = json.loads(path.read_text())
    errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errs[:5]:
        print(f"    schema: {list(e.path)}: {e.message}")
    check(not errs, f"{what}: {path.name} validates against the schema")
    return doc


def python_reference(model: Path, work: Path, shapes, ort_opts: dict, truncate=None):
    import onnxruntime as ort
    from safetensors.numpy import load_file

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[ort_opts.get("graph_optimization_level", "all")]
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    refs = {}
    for b, s in shapes:
        w = load_file(str(work / f"w_{b}x{s}.safetensors"))
        y = sess.run(["sentence_embedding"], {"input_ids": w["input_ids"], "attention_mask": w["attention_mask"]})[0]
        if truncate:
            y = y[:, :truncate]
            y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        refs[(b, s)] = y
    return refs, ort.__version__


def main() -> int:
    ap = argparse.ArgumentParser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument("--bin-dir", type=Path, default=cache / "embedperf" / "cpp-build")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embedperf-cpp-e2e"))
    ap.add_argument("--skip-faults", action="store_true")
    args = ap.parse_args()
    ort_bin, null_bin = args.bin_dir / "embedperf-ort-cpp", args.bin_dir / "embedperf-null-cpp"
    for b in (ort_bin, null_bin):
        if not b.exists():
            print(f"missing {b}: run native/cpp/build.sh first")
            return 2
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rq_schema, rs_schema = validators()
    from safetensors.numpy import load_file

    print("== artifacts")
    model = work / "model.onnx"
    export_model(model)
    check(model.exists(), f"exported {model}")
    shapes = [(2, 8), (3, 16), (1, 5), (4, 33)]
    for i, (b, s) in enumerate(shapes):
        write_workload(work / f"w_{b}x{s}.safetensors", b, s, seed=i)

    def compare(doc, name, refs, expected_dim):
        for sh in doc["shapes"]:
            key = (sh["batch"], sh["seq"])
            check(sh["status"] == "ok", f"{name} {key}: status ok ({sh.get('error')})")
            if sh["status"] != "ok":
                continue
            got = load_file(sh["embeddings"])["sentence_embedding"]
            check(got.dtype == np.float32 and got.shape == (key[0], expected_dim),
                  f"{name} {key}: embeddings F32 {got.shape} == {(key[0], expected_dim)}")
            diff = float(np.abs(got - refs[key]).max())
            check(diff <= 1e-5, f"{name} {key}: max abs diff vs onnxruntime-python {diff:.2e} <= 1e-5")
            t = sh
            check(len(t["warmup_ns"]) == 2 and abs(t["first_call_s"] - t["warmup_ns"][0] / 1e9) < 1e-12,
                  f"{name} {key}: 2 warm-up calls, first_call_s == warmup_ns[0]")
            check(t["stop_rule"] == "min_reached" and len(t["samples_ns"]) >= 5 and t["loop_s"] >= 0.05,
                  f"{name} {key}: stop_rule min_reached with {len(t['samples_ns'])} calls in {t['loop_s']:.3f}s")
            check(t["loop_peak_rss_mb"] is not None and t["peak_rss_mb"] >= t["loop_peak_rss_mb"],
                  f"{name} {key}: peak_rss_mb {t['peak_rss_mb']:.1f} >= loop_peak_rss_mb {t['loop_peak_rss_mb']}")

    # 1. ORT runner, defaults (no onnxruntime block), no truncation
    print("== embedperf-ort-cpp, default session options")
    req = request(work, "ort_default", "onnxruntime-cpp", "onnx", str(model), shapes)
    schema_ok(rq_schema, req, "request")
    rc, res, err, dt = run(ort_bin, req)
    check(rc == 0, f"exit 0 (got {rc}; {dt:.1f}s) {err.strip()[-300:]}")
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        refs, pyver = python_reference(model, work, shapes, {})
        fw = doc["framework"]
        print("   framework:", json.dumps(fw))
        print("   device:", json.dumps(doc["device"]), " settings:", json.dumps(doc["settings"]))
        check(fw["name"] == "onnxruntime" and fw["version"] == pyver, f"framework version {fw['version']} == python's {pyver}")
        lib = fw.get("library_path")
        check(bool(lib) and os.path.exists(lib), f"library_path {lib} exists")
        if lib and os.path.exists(lib):
            import hashlib
            check(fw.get("library_sha256") == hashlib.sha256(Path(lib).read_bytes()).hexdigest(), "library_sha256 matches")
        check(doc["device"] == {"requested": "cpu", "used": "cpu", "provider": "CPUExecutionProvider"}, "device block")
        st = doc["settings"]
        check(st["graph_optimization_level"] == "all" and st["execution_mode"] == "sequential"
              and st["enable_cpu_mem_arena"] is True and st["allow_spinning"] is True
              and st["session_config"] == {"session.intra_op.allow_spinning": "1", "session.inter_op.allow_spinning": "1"}
              and st["intra_op_num_threads"] == 2 and st["inter_op_num_threads"] == 1,
              "settings record ORT defaults and threads")
        check(doc["runner"]["language"] == "cpp" and doc["runner"]["name"] == "onnxruntime-cpp", "runner block")
        check(doc["load_s"] is not None and doc["load_s"] > 0, f"load_s {doc['load_s']}")
        compare(doc, "ort_default", refs, OUTPUT_DIM)

    # 2. explicit session options + Matryoshka truncation
    print("== embedperf-ort-cpp, explicit options + truncate_dim 16")
    opts = {"graph_optimization_level": "basic", "execution_mode": "parallel", "enable_cpu_mem_arena": False,
            "allow_spinning": False}
    req = request(work, "ort_trunc", "onnxruntime-cpp", "onnx", str(model), shapes, truncate=16, ort=opts)
    schema_ok(rq_schema, req, "request")
    rc, res, err, dt = run(ort_bin, req)
    check(rc == 0, f"exit 0 (got {rc}; {dt:.1f}s) {err.strip()[-300:]}")
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        st = doc["settings"]
        print("   settings:", json.dumps(st))
        check(st["graph_optimization_level"] == "basic" and st["execution_mode"] == "parallel"
              and st["enable_cpu_mem_arena"] is False and st["allow_spinning"] is False
              and st["session_config"] == {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
              and st["defaults_used"] == [], "settings record the requested options")
        refs, _ = python_reference(model, work, shapes, opts, truncate=16)
        compare(doc, "ort_trunc", refs, 16)
        for sh in doc["shapes"]:
            e = load_file(sh["embeddings"])["sentence_embedding"]
            check(bool(np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)), f"ort_trunc {sh['batch'], sh['seq']}: rows unit norm")

    # 3. a failing shape in the middle: recorded, the runner goes on
    print("== per-shape failure")
    req = request(work, "ort_badshape", "onnxruntime-cpp", "onnx", str(model), [(2, 8), (3, 16), (1, 5)])
    r = json.loads(req.read_text())
    r["shapes"][1]["workload"] = str(work / "w_2x8.safetensors")  # says [3,16], file is [2,8]
    r["shapes"][2]["workload"] = str(work / "does-not-exist.safetensors")
    r["shapes"].append({"batch": 4, "seq": 33, "workload": str(work / "w_4x33.safetensors"),
                        "embeddings": str(work / "ort_badshape_emb_4x33.safetensors")})
    req.write_text(json.dumps(r))
    rc, res, err, dt = run(ort_bin, req)
    check(rc == 0, f"exit 0 (got {rc})")
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        st = [s["status"] for s in doc["shapes"]]
        print("   statuses:", st, "errors:", [s["error"] for s in doc["shapes"]])
        check(st == ["ok", "failed", "failed", "ok"], "shapes ok, failed, failed, ok")

    # 4. load failure
    print("== load failure")
    req = request(work, "ort_noload", "onnxruntime-cpp", "onnx", str(work / "missing.onnx"), [(2, 8)])
    rc, res, err, dt = run(ort_bin, req)
    check(rc == 1, f"exit 1 (got {rc})")
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        print("   error:", json.dumps(doc["error"])[:300])
        check(doc["error"] and doc["error"]["kind"] == "load" and doc["shapes"] == [], "error {kind: load}, no shapes")

    # 4b. a bad request (protocol 2) and a non-onnx artifact: clear errors, exit 1, valid results
    print("== bad request / wrong artifact format")
    req = request(work, "ort_proto2", "onnxruntime-cpp", "onnx", str(model), [(2, 8)])
    r = json.loads(req.read_text())
    r["protocol"] = 2
    req.write_text(json.dumps(r))
    rc, res, err, dt = run(ort_bin, req)
    doc = schema_ok(rs_schema, res, "result") if res.exists() else None
    check(rc == 1 and doc is not None and doc["error"]["kind"] == "request" and "protocol" in doc["error"]["message"],
          f"protocol 2: exit {rc}, error {doc and doc['error']}")
    req = request(work, "ort_wrongfmt", "onnxruntime-cpp", "reference", str(work), [(2, 8)])
    rc, res, err, dt = run(ort_bin, req)
    doc = schema_ok(rs_schema, res, "result") if res.exists() else None
    check(rc == 1 and doc is not None and doc["error"]["kind"] == "load" and "onnx" in doc["error"]["message"],
          f"format reference: exit {rc}, error {doc and doc['error']}")

    # 4c. artifact.path may be the folder holding model.onnx
    print("== artifact path is a folder")
    req = request(work, "ort_dir", "onnxruntime-cpp", "onnx", str(work), [(3, 16)])
    rc, res, err, dt = run(ort_bin, req)
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        refs, _ = python_reference(model, work, [(3, 16)], {})
        compare(doc, "ort_dir", refs, OUTPUT_DIM)

    # 5. cuda on a library without the CUDA EP (or with it, on a GPU machine)
    print("== device cuda")
    req = request(work, "ort_cuda", "onnxruntime-cpp", "onnx", str(model), [(2, 8)], device="cuda")
    rc, res, err, dt = run(ort_bin, req)
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        if rc == 0:
            print("   device:", json.dumps(doc["device"]), "settings:", json.dumps(doc["settings"]["session_config"]))
            check(doc["device"]["provider"] == "CUDAExecutionProvider" and doc["shapes"][0]["status"] == "ok", "ran on CUDA")
            refs, _ = python_reference(model, work, [(2, 8)], {})
            got = load_file(doc["shapes"][0]["embeddings"])["sentence_embedding"]
            print(f"   cuda vs cpu python max abs diff {np.abs(got - refs[(2, 8)]).max():.2e} (informational)")
        else:
            print("   error:", json.dumps(doc["error"])[:400])
            check(rc == 1 and "CUDAExecutionProvider" in doc["error"]["message"], "clear CUDA-unavailable load error")

    # 6. null runner
    print("== embedperf-null-cpp")
    req = request(work, "null", "null-cpp", "none", "", shapes, truncate=16,
                  timing={"warmup": 2, "min_calls": 50, "min_seconds": 0.02, "max_seconds": 5.0})
    schema_ok(rq_schema, req, "request")
    rc, res, err, dt = run(null_bin, req)
    check(rc == 0, f"exit 0 (got {rc}) {err.strip()[-200:]}")
    doc = schema_ok(rs_schema, res, "result")
    if doc:
        for sh in doc["shapes"]:
            e = load_file(sh["embeddings"])["sentence_embedding"]
            check(sh["status"] == "ok" and e.shape == (sh["batch"], OUTPUT_DIM) and not e.any(),
                  f"null {sh['batch'], sh['seq']}: zeros [B, output_dim], {len(sh['samples_ns'])} calls, "
                  f"median {np.median(sh['samples_ns']):.0f} ns")

    if not args.skip_faults:
        print("== null faults")

        def limit_as():
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

        expect = {"crash": -signal.SIGABRT, "exit": 3, "hang": "timeout", "oom": -signal.SIGABRT}
        for kind, want in expect.items():
            req = request(work, f"null_{kind}", "null-cpp", "none", "", [(2, 8), (3, 16)], fault={"kind": kind, "at_shape": 1})
            schema_ok(rq_schema, req, "request") if kind == "crash" else None
            rc, res, err, dt = run(null_bin, req, timeout=3 if kind == "hang" else 60,
                                   preexec=limit_as if kind == "oom" else None)
            doc = json.loads(res.read_text()) if res.exists() else None
            check(rc == want, f"fault {kind}: exit {rc} == {want} ({dt:.1f}s)")
            check(doc is not None and len(doc["shapes"]) == 1 and doc["shapes"][0]["status"] == "ok",
                  f"fault {kind}: result kept shape 0 only")
        req = request(work, "null_exit0", "null-cpp", "none", "", [(2, 8)], fault={"kind": "exit"})
        rc, res, err, dt = run(null_bin, req)
        doc = json.loads(res.read_text()) if res.exists() else None
        check(rc == 3 and doc is not None and doc["shapes"] == [], "fault exit, at_shape default 0: exit 3, no shapes")

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
