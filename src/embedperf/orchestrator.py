"""Run a matrix: plan cells, prepare models, write workloads, launch runners, analyse, store.

Never imports a framework: every model touch happens in a prepare or runner subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors.numpy import load_file

import embedperf
from embedperf.measure import calibrate, parity
from embedperf.measure import warnings as cell_warnings
from embedperf.measure.flops import cell_work
from embedperf.measure.machine import available_cpus, machine_info, thread_env
from embedperf.measure.stats import Stats
from embedperf.models.registry import ModelSpec, get_model
from embedperf.models.sources import Located, SourceError, locate
from embedperf.paths import models_dir, workloads_dir
from embedperf.prepare import PrepareError, ensure_prepared
from embedperf.prepare.cache import Prepared
from embedperf.protocol import PROTOCOL_VERSION, write_json_atomic
from embedperf.results.store import CELL_SCHEMA, cell_id, existing_cells
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES, Runtime, availability
from embedperf.spec import ModelChoice, RunSpec
from embedperf.workload import text as workload

# The session options every ONNX Runtime binding applies identically, so that a
# difference between them is the binding, not the configuration.
ORT_SESSION_OPTIONS = {
    "graph_optimization_level": "all",
    "execution_mode": "sequential",
    "enable_cpu_mem_arena": True,
    "allow_spinning": True,
}


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def project_commit() -> dict:
    """The git commit of the checkout embedperf runs from (and whether it has local changes)."""
    root = Path(embedperf.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(dirty) if head else None}


@dataclass
class ModelPlan:
    """One model of the run, resolved: where it comes from and what was prepared."""

    choice: ModelChoice
    spec: ModelSpec
    located: Located | None = None
    prepared: Prepared | None = None
    error: str | None = None


class Orchestrator:
    def __init__(self, spec: RunSpec, results_root: Path, run_id: str | None = None, say=print, on_cell=None):
        self.spec = spec
        self.on_cell = on_cell  # called with each cell document's path as soon as it is written
        self.run_id = run_id or new_run_id()
        self.run_dir = results_root / self.run_id
        self.say = say
        self.threads = spec.threads or available_cpus()
        self.machine = machine_info()
        self.commit = project_commit()
        # this machine's ceilings for the thread budget, when `embedperf calibrate` has measured them (never measures)
        self.profile = calibrate.cached(self.threads)
        self.written: list[dict] = []
        self.kept = 0
        self.total = len(spec.models) * len(spec.runtimes) * len(spec.batch) * len(spec.seq)

    # -- the whole run -------------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "work").mkdir(exist_ok=True)
        run_doc = self.run_dir / "run.json"
        if not run_doc.exists():
            write_json_atomic(run_doc, {"run_id": self.run_id, "spec": self.spec.to_dict(),
                                        "created": dt.datetime.now(dt.timezone.utc).isoformat()})
        done = existing_cells(self.run_dir)
        self.kept = len(done)
        self.say(f"run {self.run_id}: {len(self.spec.models)} model(s) x {len(self.spec.runtimes)} runtime(s) x "
                 f"{len(self.spec.batch) * len(self.spec.seq)} shape(s), {self.threads} thread(s), "
                 f"{self.spec.precision}, {self.spec.device}; results in {self.run_dir}")
        if done:
            self.say(f"resume: {len(done)} cell(s) already on disk are kept")
        for choice in self.spec.models:
            self.run_model(choice, done)
        return self.written

    def shapes(self) -> list[tuple[int, int]]:
        return [(b, s) for b in self.spec.batch for s in self.spec.seq]

    def run_model(self, choice: ModelChoice, done: set[str]) -> None:
        plan = ModelPlan(choice, get_model(choice.name))
        todo = {r: [(b, s) for b, s in self.shapes() if self.cell_id(plan, r, b, s) not in done]
                for r in self.spec.runtimes}
        todo = {r: shapes for r, shapes in todo.items() if shapes}
        if not todo:
            return
        runnable = {}
        for name, shapes in todo.items():
            runtime = RUNTIMES[name]
            reason = availability(runtime)
            if reason is None and self.spec.device.split(":")[0] not in runtime.devices:
                reason = f"{name} does not run on {self.spec.device}"
            if reason:
                for b, s in shapes:
                    self.store(plan, runtime, b, s, status="skipped", reason=reason)
            else:
                runnable[name] = shapes
        formats = {RUNTIMES[r].artifact for r in runnable} - {"none"}
        if formats:
            self.prepare(plan, formats)
        loads = {(b, s): workload.ensure(plan.spec, choice.source, b, s, workloads_dir())
                 for shapes in runnable.values() for b, s in shapes}
        references = self.reference_pass(plan, loads) if formats and not plan.error else {}
        for name, shapes in runnable.items():
            runtime = RUNTIMES[name]
            if plan.error and runtime.artifact != "none":
                for b, s in shapes:
                    self.store(plan, runtime, b, s, status="failed", reason=plan.error)
                continue
            self.run_group(plan, runtime, [loads[x] for x in shapes], references)

    # -- prepare and reference -----------------------------------------------------
    def prepare(self, plan: ModelPlan, formats: set[str]) -> None:
        try:
            plan.located = locate(plan.spec, plan.choice.source, plan.choice.path, plan.choice.revision)
            plan.prepared = ensure_prepared(plan.spec, plan.located, formats, models_dir(), self.threads, self.say)
        except (SourceError, PrepareError) as e:
            plan.error = str(e)
            self.say(f"error: {e}")

    def reference_pass(self, plan: ModelPlan, loads: dict) -> dict:
        """PyTorch fp32, eager attention, one call per shape; cached beside the prepared model."""
        folder = plan.prepared.folder / "references"
        folder.mkdir(exist_ok=True)
        out = {}
        missing = []
        for (b, s), w in loads.items():
            path = folder / f"{w.path.parent.name}_b{b}_s{s}.safetensors"
            out[(b, s)] = path
            if not path.exists():
                missing.append({"batch": b, "seq": s, "workload": str(w.path), "embeddings": str(path)})
        if len(missing) < len(loads):
            self.say(f"reference: reusing the cached PyTorch fp32 reference for {len(loads) - len(missing)} shape(s)")
        if missing:
            self.say(f"reference: PyTorch fp32 eager pass for {len(missing)} shape(s)")
            request = self.request(plan, RUNTIMES["torch"], missing, reference=True)
            outcome = launch(RUNTIMES["torch"], request, plan.prepared.folder / "references", "reference",
                             self.spec.timing.load_timeout + len(missing) * 600, None,
                             thread_env(self.threads))
            if outcome.returncode != 0:
                self.say(f"warning: the reference pass failed: {outcome.why()} (log {outcome.log})")
        return {k: v for k, v in out.items() if v.exists()}

    # -- one runner process --------------------------------------------------------
    def request(self, plan: ModelPlan, runtime: Runtime, shapes: list[dict], reference: bool = False) -> dict:
        spec = plan.spec
        if runtime.artifact == "none":
            artifact = {"format": "none", "path": ""}
        else:
            path = plan.prepared.artifact_path(runtime.artifact)
            artifact = {"format": runtime.artifact, "path": str(path),
                        "sha256": plan.prepared.manifest["artifacts"][runtime.artifact]["files"].get(path.name)}
            if runtime.name == "torch":
                artifact["attention"] = "eager" if reference else "sdpa"
        timing = ({"warmup": 0, "min_calls": 1, "min_seconds": 0.0, "max_seconds": 1e-9} if reference
                  else self.spec.timing.for_request())
        request = {
            "protocol": PROTOCOL_VERSION,
            "runtime": runtime.name,
            "model": {"name": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
                      "dense": spec.dense_names(), "output_dim": spec.embedding_dim(plan.choice.source),
                      "truncate_dim": None if reference else plan.choice.truncate_dim},
            "artifact": artifact,
            "shapes": shapes,
            "device": "cpu" if reference else self.spec.device,
            "precision": "fp32" if reference else self.spec.precision,
            "threads": {"intra_op": self.threads, "inter_op": 1},
            "timing": timing,
            "onnxruntime": ORT_SESSION_OPTIONS if runtime.artifact == "onnx" else None,
            "fault": self.spec.fault if runtime.is_null else None,
        }
        return request

    def run_group(self, plan: ModelPlan, runtime: Runtime, loads: list, references: dict) -> None:
        emb_dir = self.run_dir / "embeddings"
        emb_dir.mkdir(exist_ok=True)
        shapes = [{"batch": w.batch, "seq": w.seq, "workload": str(w.path),
                   "embeddings": str(emb_dir / f"{self.cell_id(plan, runtime.name, w.batch, w.seq)}.safetensors")}
                  for w in loads]
        request = self.request(plan, runtime, shapes)
        t = self.spec.timing
        timeout = t.load_timeout + len(shapes) * (t.max_seconds + t.grace)
        tag = f"{plan.spec.slug}__{plan.choice.source}__{runtime.name}"
        self.say(f"{runtime.name}: {plan.spec.name} ({plan.choice.source}), {len(shapes)} shape(s)")
        outcome = launch(runtime, request, self.run_dir / "work", tag, timeout, self.spec.memory_limit_mb,
                         thread_env(self.threads))
        reported = {(s["batch"], s["seq"]): s for s in (outcome.result or {}).get("shapes", [])}
        for w in loads:
            shape = reported.get((w.batch, w.seq))
            if shape is None:
                self.store(plan, runtime, w.batch, w.seq, status="failed", reason=outcome.why(),
                           runner=outcome.result, log=outcome.log)
            elif shape["status"] != "ok":
                self.store(plan, runtime, w.batch, w.seq, status="failed", reason=shape.get("error") or "failed",
                           runner=outcome.result, shape=shape, log=outcome.log)
            else:
                self.store(plan, runtime, w.batch, w.seq, status="ok", runner=outcome.result, shape=shape,
                           reference=references.get((w.batch, w.seq)), log=outcome.log)

    # -- one cell ------------------------------------------------------------------
    def cell_id(self, plan: ModelPlan, runtime: str, b: int, s: int) -> str:
        c = plan.choice
        return cell_id(plan.spec.slug, c.source, runtime, self.spec.precision, self.spec.device, self.spec.scenario,
                       b, s, c.truncate_dim)

    def store(self, plan: ModelPlan, runtime: Runtime, b: int, s: int, status: str, reason: str | None = None,
              runner: dict | None = None, shape: dict | None = None, reference: Path | None = None,
              log: Path | None = None) -> dict:
        spec, choice = plan.spec, plan.choice
        manifest = plan.prepared.manifest if plan.prepared else {}
        doc: dict = {
            "schema": CELL_SCHEMA,
            "run_id": self.run_id,
            "cell_id": self.cell_id(plan, runtime.name, b, s),
            "status": status,
            "reason": reason,
            "spec": {
                "model": spec.name, "family": spec.family, "source": choice.source, "revision": choice.revision,
                "runtime": runtime.name, "language": runtime.language, "precision": self.spec.precision,
                "device": self.spec.device, "scenario": self.spec.scenario, "batch": b, "seq": s,
                "truncate_dim": choice.truncate_dim, "threads": {"intra_op": self.threads, "inter_op": 1},
                "timing": self.spec.timing.__dict__, "memory_limit_mb": self.spec.memory_limit_mb,
                "workload": {"seed": workload.DEFAULT_SEED, "padding": "right",
                             "lengths": "row 0 = seq, others seeded in [seq/2, seq]"},
            },
            "model": {
                "weights": (plan.located.weights if plan.located else
                            ("random" if choice.source in ("twin", "tiny") else "real")),
                "weights_sha256": manifest.get("weights_sha256"), "heads_sha256": manifest.get("heads_sha256"),
                "parameters": manifest.get("parameters"), "prepare_key": manifest.get("key"),
                "artifact": runtime.artifact, "pooling": spec.pooling,
                "output_dim": spec.embedding_dim(choice.source),
            },
            "machine": self.machine,
            "versions": {
                "embedperf": embedperf.__version__, "python": sys.version.split()[0],
                "exporters": manifest.get("versions"),
                "runner": (runner or {}).get("runner"), "framework": (runner or {}).get("framework"),
            },
            "project": self.commit,
            "runner": {k: (runner or {}).get(k) for k in ("device", "threads", "settings", "load_s")},
            "raw": None, "summary": None, "parity": None, "warnings": [],
            "log": str(log) if log else None,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        if shape and shape.get("samples_ns"):
            stats = Stats(tuple(shape["samples_ns"]))
            doc["raw"] = {"samples_ns": shape["samples_ns"], "warmup_ns": shape.get("warmup_ns", [])}
            doc["summary"] = {
                **stats.summary(b), "load_s": (runner or {}).get("load_s"), "first_call_s": shape.get("first_call_s"),
                "peak_rss_mb": shape.get("peak_rss_mb"), "loop_peak_rss_mb": shape.get("loop_peak_rss_mb"),
                "stop_rule": shape.get("stop_rule"), "loop_s": shape.get("loop_s"),
            }
            if not runtime.is_null:
                peak = (self.profile or {}).get("peak_gflops") if (self.spec.device == "cpu"
                                                                   and self.spec.precision == "fp32") else None
                doc["work"] = cell_work(spec, choice.source, b, s, stats.median_ms, peak)
                if self.profile:
                    doc["work"]["machine_profile"] = {k: self.profile.get(k) for k in ("peak_gflops", "bandwidth_gbs")}
                    doc["work"]["machine_profile"]["id"] = self.profile["fingerprint"]["id"]
            checked = cell_warnings.check_samples(
                shape["samples_ns"], shape.get("first_call_s"), (self.machine.get("load_average") or [None])[0],
                self.machine.get("cpus_available"),
                None if runtime.is_null else cell_warnings.null_overheads(self.written).get(runtime.language))
            doc["outliers"] = checked["outliers"]
            doc["warnings"] += [w["message"] for w in checked["warnings"]]
            if shape.get("stop_rule") == "time_cap":
                doc["warnings"].append("stopped at the time cap before min_calls/min_seconds were met")
        if s > spec.st_max_seq_length and choice.source != "tiny":
            doc["warnings"].append(f"seq {s} is above max_seq_length {spec.st_max_seq_length}")
        if status == "ok" and not runtime.is_null:
            doc["parity"] = self.parity(shape, reference)
            spread = doc["parity"].get("reference_spread")
            if spread is not None and spread >= parity.SPREAD_LIMIT:
                doc["warnings"].append(f"reference rows are alike (mean cosine {spread:.4f} between rows): "
                                       "parity proves less here")
            failed = self.parity_failure(doc["parity"])
            if failed:
                doc["status"], doc["reason"] = "failed", failed
        path = self.run_dir / f"{doc['cell_id']}.json"
        write_json_atomic(path, doc)
        self.written.append(doc)
        if self.on_cell:
            self.on_cell(path)
        median = doc["summary"]["median_ms"] if doc["summary"] else None
        line = f"  [{len(self.written)}/{self.total - self.kept}] b{b} s{s} {runtime.name}: {doc['status']}"
        if median is not None:
            line += f"  median {median:.3f} ms"
        if doc["parity"] and doc["parity"].get("min_cosine") is not None:
            line += f"  min cos {doc['parity']['min_cosine']:.6f}"
        if doc["reason"]:
            line += f"  ({doc['reason']})"
        self.say(line)
        return doc

    def parity(self, shape: dict, reference: Path | None) -> dict:
        if reference is None:
            return {"error": "no reference embeddings (the reference pass failed)"}
        try:
            out = load_file(shape["embeddings"])["sentence_embedding"]
            ref = load_file(str(reference))["sentence_embedding"]
        except (OSError, KeyError) as e:
            return {"error": f"could not read embeddings: {e}"}
        result = parity.compare(out, ref)
        result["reference_spread"] = parity.spread(ref)
        result["reference"] = "torch fp32 eager"
        return result

    def parity_failure(self, p: dict) -> str | None:
        if p.get("error"):
            return f"parity: {p['error']}"
        if self.spec.precision == "fp32" and not (p["min_cosine"] >= parity.FP32_MIN_COSINE):
            return f"parity: min cosine {p['min_cosine']:.6f} < {parity.FP32_MIN_COSINE}"
        return None


def run_spec(spec: RunSpec, results_root: Path, run_id: str | None = None, say=print,
             on_cell=None) -> tuple[str, list[dict]]:
    orch = Orchestrator(spec, results_root, run_id, say, on_cell)
    cells = orch.run()
    return orch.run_id, cells


def load_run_spec(results_root: Path, run_id: str) -> RunSpec:
    path = results_root / run_id / "run.json"
    if not path.exists():
        from embedperf.spec import SpecError

        raise SpecError(f"no run {run_id!r} under {results_root} (no run.json)")
    return RunSpec.from_dict(json.loads(path.read_text())["spec"])
