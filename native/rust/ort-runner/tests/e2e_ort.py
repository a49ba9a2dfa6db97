#!/usr/bin/env python3
"""End-to-end check of the Rust runners against the protocol (not run by cargo).

    /work/main/.venv/bin/python native/rust/ort-runner/tests/e2e_ort.py [--workdir /tmp/embedperf-e2e]

What it does (scratch files go to --workdir, default a fresh /tmp folder):
1. exports a tiny random BertModel + masked mean pooling + L2 normalize to
   model.onnx (inputs input_ids/attention_mask int64 [B,S], output
   sentence_embedding float32 [B,D]) with torch.onnx.export;
2. writes right-padded workloads with numpy + safetensors;
3. runs embedperf-ort-rust (ORT_DYLIB_PATH = the onnxruntime wheel's
   libonnxruntime.so.1.*) with and without truncate_dim, validates each result
   against src/embedperf/protocol/result.schema.json and compares the written
   embeddings with onnxruntime-python's output under the same session options
   (max abs diff <= 1e-5);
4. checks error paths: missing model (exit 1, error.kind=load), cuda without the
   cuda feature (exit 1), a missing workload (that shape failed, the next ok);
5. runs embedperf-null-rust: a normal run (schema-valid) and every fault kind
   (exit -> 3, crash -> SIGABRT, hang -> still alive after 3 s, oom -> dies
   under RLIMIT_AS); max_calls stops the null loop with stop_rule call_cap.
Exit status 0 when every check passed.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[4]
SCHEMAS = REPO / "src" / "embedperf" / "protocol"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR")
              or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedperf" / "cargo-target")

FAILS: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        FAILS.append(what)


def export_model(folder: Path, hidden: int = 32) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=128, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    bert = BertModel(cfg, add_pooling_layer=False).eval()

    class Embed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=-1)

    model = Embed(bert).eval()
    ids = torch.randint(1, 128, (2, 8), dtype=torch.int64)
    mask = torch.ones(2, 8, dtype=torch.int64)
    path = folder / "model.onnx"
    kwargs = dict(input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                  dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                "sentence_embedding": {0: "batch"}}, opset_version=17)
    try:
        torch.onnx.export(model, (ids, mask), str(path), dynamo=False, **kwargs)
    except TypeError:  # very old torch without the dynamo switch
        torch.onnx.export(model, (ids, mask), str(path), **kwargs)
    return path


def write_workload(path: Path, batch: int, seq: int, rng) -> dict:
    from safetensors.numpy import save_file

    lengths = rng.integers(1, seq + 1, size=batch).astype(np.int64)
    lengths[0] = seq  # at least one full row
    ids = np.zeros((batch, seq), dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 128, size=n)
        mask[i, :n] = 1
    save_file({"input_ids": ids, "attention_mask": mask, "lengths": lengths}, str(path))
    return {"input_ids": ids, "attention_mask": mask}


def validate(result: dict, name: str) -> None:
    import jsonschema

    schema = json.loads((SCHEMAS / "result.schema.json").read_text())
    errs = sorted(jsonschema.Draft202012Validator(schema).iter_errors(result), key=str)
    check(not errs, f"{name}: result validates against result.schema.json" + (f" ({errs[0].message})" if errs else ""))


def validate_request(req: dict) -> None:
    import jsonschema

    schema = json.loads((SCHEMAS / "request.schema.json").read_text())
    jsonschema.validate(req, schema)


def read_emb(path: str) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(path)["sentence_embedding"]


def run_runner(binary: Path, req: dict, work: Path, name: str, env=None, timeout=120, preexec=None):
    validate_request(req)
    rq, rs = work / f"{name}.request.json", work / f"{name}.result.json"
    rq.write_text(json.dumps(req, indent=1))
    if rs.exists():
        rs.unlink()
    p = subprocess.run([str(binary), "--request", str(rq), "--result", str(rs)], env=env, timeout=timeout,
                       capture_output=True, text=True, preexec_fn=preexec)
    result = json.loads(rs.read_text()) if rs.exists() else None
    return p, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--ort-binary", type=Path, default=TARGET / "release" / "embedperf-ort-rust")
    ap.add_argument("--null-binary", type=Path, default=TARGET / "release" / "embedperf-null-rust")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedperf-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}")

    import onnxruntime as ort

    lib = sorted(glob.glob(str(Path(ort.__file__).parent / "capi" / "libonnxruntime.so.1.*")))
    assert lib, "no libonnxruntime.so.1.* in the onnxruntime wheel"
    env = dict(os.environ, ORT_DYLIB_PATH=lib[0])
    print(f"ORT_DYLIB_PATH={lib[0]}  (onnxruntime-python {ort.__version__})")

    model = export_model(work)
    rng = np.random.default_rng(0)
    shapes, inputs = [], []
    for b, s in [(1, 8), (2, 8), (3, 16), (4, 32)]:
        wl = work / f"wl_{b}x{s}.safetensors"
        inputs.append(write_workload(wl, b, s, rng))
        shapes.append({"batch": b, "seq": s, "workload": str(wl), "embeddings": str(work / f"emb_{b}x{s}.safetensors")})

    ort_opts = {"graph_optimization_level": "all", "execution_mode": "sequential",
                "enable_cpu_mem_arena": False, "allow_spinning": False}
    base = {
        "protocol": 1, "runtime": "onnxruntime-rust",
        "model": {"name": "tiny-bert", "family": "bert", "pooling": "mean", "normalize": True, "output_dim": 32,
                  "truncate_dim": None},
        "artifact": {"format": "onnx", "path": str(model), "sha256": None},
        "shapes": shapes, "device": "cpu", "precision": "fp32",
        "threads": {"intra_op": 2, "inter_op": 1},
        "timing": {"warmup": 3, "min_calls": 20, "min_seconds": 0.2, "max_seconds": 5.0},
        "onnxruntime": ort_opts, "fault": None,
    }

    # Reference: onnxruntime-python with the same session options.
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = False
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    refs = [sess.run(["sentence_embedding"], x)[0] for x in inputs]

    for trunc in (None, 16):
        print(f"== embedperf-ort-rust, truncate_dim={trunc}")
        req = json.loads(json.dumps(base))
        req["model"]["truncate_dim"] = trunc
        p, res = run_runner(args.ort_binary, req, work, f"ort_t{trunc}", env=env)
        check(p.returncode == 0, f"exit code 0 (got {p.returncode}; stderr: {p.stderr.strip()[-400:]})")
        if res is None:
            check(False, "result written")
            continue
        validate(res, "ort")
        check(res["error"] is None and len(res["shapes"]) == len(shapes), "no error, every shape reported")
        for spec, ref, sh in zip(shapes, refs, res["shapes"]):
            want = ref
            if trunc:
                want = ref[:, :trunc]
                want = want / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
            got = read_emb(spec["embeddings"])
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            check(sh["status"] == "ok" and got.shape == want.shape and diff <= 1e-5,
                  f"[{spec['batch']}x{spec['seq']}] {sh['status']}, shape {got.shape}, max abs diff {diff:.2e}, "
                  f"{len(sh['samples_ns'])} calls, stop_rule {sh['stop_rule']}, "
                  f"median {np.median(sh['samples_ns']) / 1e3:.1f} us, loop_peak {sh['loop_peak_rss_mb']} MiB")
            check(len(sh["warmup_ns"]) == 3 and sh["first_call_s"] is not None, "warmup_ns has 3 entries, first_call_s set")
            check(sh["stop_rule"] == "min_reached" and len(sh["samples_ns"]) >= 20 and sh["loop_s"] >= 0.2,
                  "min_reached after >= min_calls and >= min_seconds")
        if trunc is None:
            print("  framework:", json.dumps(res["framework"]))
            print("  device:   ", json.dumps(res["device"]))
            print("  settings: ", json.dumps(res["settings"]))
            check(res["framework"]["name"] == "onnxruntime" and res["framework"]["version"] == ort.__version__,
                  "framework name/version = onnxruntime " + ort.__version__)

    print("== error paths")
    req = json.loads(json.dumps(base))
    req["artifact"]["path"] = str(work / "missing.onnx")
    p, res = run_runner(args.ort_binary, req, work, "ort_missing", env=env)
    check(p.returncode == 1 and res and res["error"]["kind"] == "load", f"missing model: exit 1, error.kind=load ({res and res['error']})")
    if res:
        validate(res, "ort load failure")
    req = json.loads(json.dumps(base))
    req["device"] = "cuda"
    p, res = run_runner(args.ort_binary, req, work, "ort_cuda", env=env)
    check(p.returncode == 1 and res and "cuda" in res["error"]["message"],
          f"cuda request: exit {p.returncode}, error: {res and res['error']}")
    req = json.loads(json.dumps(base))
    req["shapes"] = [dict(shapes[0], workload=str(work / "nope.safetensors")), shapes[1]]
    p, res = run_runner(args.ort_binary, req, work, "ort_badshape", env=env)
    check(p.returncode == 0 and res and [s["status"] for s in res["shapes"]] == ["failed", "ok"],
          f"missing workload: shape 0 failed, shape 1 ok ({res and [(s['status'], s['error']) for s in res['shapes']]})")
    if res:
        validate(res, "ort shape failure")
    p, res = run_runner(args.ort_binary, base, work, "ort_nolib", env={k: v for k, v in env.items() if k != "ORT_DYLIB_PATH"})
    check(p.returncode == 1 and res and "ORT_DYLIB_PATH" in res["error"]["message"], f"no ORT_DYLIB_PATH: {res and res['error']}")

    print("== embedperf-null-rust")
    nreq = json.loads(json.dumps(base))
    nreq.update(runtime="null-rust", artifact={"format": "none", "path": ""}, onnxruntime=None)
    nreq["timing"] = {"warmup": 2, "min_calls": 1000, "min_seconds": 0.2, "max_seconds": 2.0, "max_calls": 20000}
    p, res = run_runner(args.null_binary, nreq, work, "null")
    check(p.returncode == 0 and res is not None, f"null: exit 0 (stderr {p.stderr.strip()[-300:]})")
    if res:
        validate(res, "null")
        for sh in res["shapes"]:
            ns = np.array(sh["samples_ns"])
            check(sh["status"] == "ok" and sh["stop_rule"] == "call_cap" and len(ns) == 20000,
                  f"null [{sh['batch']}x{sh['seq']}]: {len(ns)} calls, median {np.median(ns):.0f} ns, "
                  f"min {ns.min()} ns, stop_rule {sh['stop_rule']}")
        e = read_emb(shapes[2]["embeddings"])
        check(e.shape == (3, 32) and not e.any(), f"null embeddings are zeros [3,32] (got {e.shape})")
    for kind, at, expect in [("exit", 1, "rc3"), ("crash", 0, "abort"), ("hang", 0, "hang"), ("oom", 2, "die")]:
        freq = json.loads(json.dumps(nreq))
        freq["fault"] = {"kind": kind, "at_shape": at}
        freq["timing"] = {"warmup": 1, "min_calls": 5, "min_seconds": 0.0, "max_seconds": 1.0}
        preexec = None
        if kind == "oom":
            preexec = lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # noqa: E731
        try:
            p, res = run_runner(args.null_binary, freq, work, f"null_{kind}", timeout=3 if kind == "hang" else 60,
                                preexec=preexec)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc, res = "timeout", json.loads((work / f"null_{kind}.result.json").read_text())
        done = len(res["shapes"]) if res else None
        ok = {"rc3": rc == 3, "abort": rc == -signal.SIGABRT, "hang": rc == "timeout",
              "die": isinstance(rc, int) and rc != 0}[expect]
        check(ok and done == at, f"fault {kind} at shape {at}: rc={rc}, shapes in result={done}")

    print(f"\n{'ALL OK' if not FAILS else f'{len(FAILS)} FAILED'}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
