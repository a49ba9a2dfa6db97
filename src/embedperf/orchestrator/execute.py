"""Execution: prepare artifacts, write workloads, run the reference pass, launch forks, keep their records.

Everything that touches a model happens in a subprocess (prepare, runners); this module only writes
requests, launches, waits and stores. Each fork's outcome is written to disk as soon as its runner
ends (`forks/<cell_id>/f<k>.json`), so an interrupted run loses at most the fork under way and
`--resume` runs only the forks still missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from embedperf.measure import activity
from embedperf.measure.machine import thread_env
from embedperf.models.registry import MODE_OUTPUTS
from embedperf.models.sources import SourceError, locate
from embedperf.orchestrator.plan import ForkJob, Load, ModelPlan, Shape, corpus_lengths
from embedperf.paths import models_dir, workloads_dir
from embedperf.prepare import PrepareError, ensure_prepared
from embedperf.prepare.cache import format_for
from embedperf.protocol import PROTOCOL_VERSION, write_json_atomic
from embedperf.runners.launch import launch
from embedperf.runners.registry import RUNTIMES, Runtime
from embedperf.spec import RunSpec
from embedperf.workload import captions, corpus, sentences
from embedperf.workload import image as image_workload
from embedperf.workload import text as workload

# The session options every ONNX Runtime binding applies identically, so that a
# difference between them is the binding, not the configuration.
ORT_SESSION_OPTIONS = {
    "graph_optimization_level": "all",
    "execution_mode": "sequential",
    "enable_cpu_mem_arena": True,
    "allow_spinning": True,
}


@dataclass
class ForkRecord:
    """What one fork of one cell produced: the runner's shape entry, or why there is none."""

    fork: int
    position: int  # index of its job in the model's interleaved schedule
    status: str  # ok | failed | skipped
    reason: str | None
    shape: dict | None  # the runner's shape entry (samples, stop rule, memory, embeddings)
    runner: dict  # runner, framework, device, threads, settings, load_s of the process
    activity: dict | None  # what the machine did while the process ran
    log: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "ForkRecord":
        return cls(**d)


ACCURACY_ITEMS_WITHOUT_TEXT = 64  # twins: seeded ids and random weights give cosine only, no need for 512 rows


def accuracy_entry(load: Load, embeddings: Path) -> dict:
    """The request's shape entry of one untimed pass over an accuracy corpus (protocol: scenario accuracy)."""
    return {"batch": int(load.facts["batch"]), "seq": int(load.facts.get("longest") or 0) or 1,
            "workload": str(load.path), "embeddings": str(embeddings), "scenario": "accuracy"}


def label_mismatch(asked: str, settings: dict) -> str | None:
    """Why a runner's result cannot carry the precision label it was asked for, or None.

    A label is a promise: every runner says what its framework applied (`settings.precision`); a cell
    whose runner ran something else, or did not say, fails instead of being relabelled."""
    ran = settings.get("precision")
    if ran is None:
        return f"label: asked for {asked}, the runner did not say which precision ran"
    if ran != asked:
        return f"label: asked for {asked}, the runner reports it ran {ran}"
    return None


def fork_path(run_dir: Path, cell_id: str, fork: int) -> Path:
    return run_dir / "forks" / cell_id / f"f{fork}.json"


def read_forks(run_dir: Path, cell_id: str) -> dict[int, ForkRecord]:
    """The fork records of a cell already on disk (an interrupted run's), by fork index."""
    out = {}
    for path in sorted((run_dir / "forks" / cell_id).glob("f*.json")):
        try:
            rec = ForkRecord.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError):
            continue  # a record cut by a crash is run again
        out[rec.fork] = rec
    return out


class Executor:
    """Launches the subprocesses of a run for one thread budget and writes what they produced."""

    def __init__(self, spec: RunSpec, run_dir: Path, threads: int, say):
        self.spec, self.run_dir, self.threads, self.say = spec, run_dir, threads, say

    # -- prepare, workloads, reference -------------------------------------------------
    def prepare(self, plan: ModelPlan, formats: set[str]) -> None:
        try:
            plan.located = locate(plan.spec, plan.choice.source, plan.choice.path, plan.choice.revision)
            plan.prepared = ensure_prepared(plan.spec, plan.located, formats, models_dir(), self.threads, self.say)
        except (SourceError, PrepareError) as e:
            plan.error = str(e)
            self.say(f"error: {e}")

    def workload(self, plan: ModelPlan, x: Shape) -> Load:
        spec, source = plan.spec, plan.choice.source
        if x.texts:
            w = plan.texts[x]
            return Load(w.path, w.facts)
        if x.order:
            c = self.spec.corpus
            w = corpus.ensure(spec.token_scheme(source), corpus_lengths(self.spec, plan), x.batch,
                              x.order == "sorted", c.seed, workloads_dir())
            return Load(w.path, w.facts)
        if x.modality == "image":
            w = image_workload.ensure(spec, x.batch, workloads_dir(), Path(self.spec.images) if self.spec.images
                                      else None)
            return Load(w.path, {"preprocess_ms": list(w.preprocess_ms), "images": list(w.sources),
                                 "recipe": spec.image_preprocess})
        if spec.multimodal and plan.located is not None and plan.located.folder is not None:
            # real weights come with their real tokenizer: real captions, one per sample photograph
            w = captions.ensure(spec, plan.located.folder, x.batch, workloads_dir())
            return Load(w.path, {"captions": "real, through the model's tokenizer"})
        w = workload.ensure(spec, source, x.batch, x.seq, workloads_dir())
        return Load(w.path, {})

    def accuracy_workload(self, plan: ModelPlan) -> Load:
        """What an accuracy pass embeds once per (runtime, precision): real sentences through the model's own
        tokenizer for a text model (seeded ids, fewer, for twins: cosine only), the fixed zero-shot captions
        for a text tower."""
        spec, source = plan.spec, plan.choice.source
        folder = plan.located.folder if plan.located else None
        if spec.multimodal:
            w = captions.zero_shot_set(spec, source, folder, workloads_dir())
        else:
            real = sentences.has_tokenizer(folder)
            w = sentences.ensure(spec, source, folder, workloads_dir(),
                                 items=sentences.DEFAULT_ITEMS if real else ACCURACY_ITEMS_WITHOUT_TEXT,
                                 corpus_file=Path(self.spec.accuracy_corpus) if self.spec.accuracy_corpus else None)
        return Load(w.path, w.facts)

    def reference_pass(self, plan: ModelPlan, loads: dict[Shape, Load],
                       accuracy: Load | None = None) -> tuple[dict[Shape, Path], Path | None]:
        """PyTorch fp32, eager attention, one call (or one corpus pass) per shape, and one pass over the accuracy
        corpus; cached beside the prepared model. Returns each shape's reference and the accuracy corpus'.

        A shape of an output mode beyond dense gets the reference of every output at once (mode `all`, in a pass
        of its own): the sparse and the colbert cells of a workload compare against the same file."""
        folder = plan.prepared.folder / "references"
        folder.mkdir(exist_ok=True)
        out: dict[Shape, Path] = {}
        accuracy_ref = folder / f"{accuracy.path.parent.name}_{accuracy.path.stem}.safetensors" if accuracy else None
        for modality, mode in dict.fromkeys((x.modality, "dense" if x.outputs == "dense" else "all") for x in loads):
            mine = {x: w for x, w in loads.items()
                    if x.modality == modality and (x.outputs == "dense") == (mode == "dense")}
            missing: dict[Path, dict] = {}
            for x, w in mine.items():
                path = folder / f"{w.path.parent.name}_{w.path.stem}{'' if mode == 'dense' else '.' + mode}.safetensors"
                out[x] = path
                if not path.exists():
                    missing.setdefault(path, self.shape_entry(x, w, path))
            if accuracy_ref and modality == "text" and mode == "dense" and not accuracy_ref.exists():
                missing[accuracy_ref] = accuracy_entry(accuracy, accuracy_ref)
            what = f"{modality} shape(s)" + ("" if mode == "dense" else " (every output)")
            cached = len({p for p in (out[x] for x in mine)} - set(missing))
            if cached:
                self.say(f"reference: reusing the cached PyTorch fp32 reference for {cached} {what}")
            if missing:
                self.say(f"reference: PyTorch fp32 eager pass for {len(missing)} {what}")
                request = self.request(plan, RUNTIMES["torch"], list(missing.values()), modality, reference=True,
                                       outputs=mode)
                tag = f"reference-{modality}" + ("" if mode == "dense" else f"-{mode}")
                outcome = launch(RUNTIMES["torch"], request, folder, tag,
                                 self.spec.timing.load_timeout + len(missing) * 1200, None, thread_env(self.threads))
                if outcome.returncode != 0:
                    self.say(f"warning: the reference pass failed: {outcome.why()} (log {outcome.log})")
        return {k: v for k, v in out.items() if v.exists()}, accuracy_ref if accuracy_ref and accuracy_ref.exists() \
            else None

    # -- requests ----------------------------------------------------------------------
    @staticmethod
    def shape_entry(x: Shape, w: Load, embeddings: Path) -> dict:
        entry = {"batch": x.batch, "seq": x.seq, "workload": str(w.path), "embeddings": str(embeddings)}
        if x.order:
            entry["scenario"] = "throughput"
        return entry

    def request(self, plan: ModelPlan, runtime: Runtime, shapes: list[dict], modality: str = "text",
                reference: bool = False, precision: str = "fp32", outputs: str = "dense") -> dict:
        """A runner's request; `outputs` is the output mode (registry.OUTPUT_MODES) its calls return."""
        spec = plan.spec
        if runtime.artifact == "none":
            artifact = {"format": "none", "path": ""}
        else:
            prepared = plan.prepared
            artifact = {"format": runtime.artifact,
                        "path": str(prepared.artifact_path(runtime.artifact, modality, precision, outputs)),
                        "sha256": prepared.artifact_sha256(runtime.artifact, modality, precision, outputs)}
            if format_for(runtime.artifact, precision) != runtime.artifact:
                artifact["precision"] = precision  # a quantized file: the runner checks its graph says so
            if runtime.name == "torch":
                artifact["attention"] = "eager" if reference else "sdpa"
        timing = ({"warmup": 0, "min_calls": 1, "min_seconds": 0.0, "max_seconds": 1e-9, "target_ci": None}
                  if reference else self.spec.timing.for_request())
        model = {"name": spec.name, "family": spec.family, "pooling": spec.pooling, "normalize": spec.normalize,
                 "dense": spec.dense_names(), "output_dim": spec.embedding_dim(plan.choice.source),
                 "truncate_dim": None if reference else plan.choice.truncate_dim}
        if spec.multimodal:
            model["modality"] = modality
        if outputs != "dense":
            model["outputs"] = list(MODE_OUTPUTS[outputs])
            if "sparse" in model["outputs"]:
                model["unused_token_ids"] = list(spec.unused_token_ids)
        return {
            "protocol": PROTOCOL_VERSION,
            "runtime": runtime.name,
            "model": model,
            "artifact": artifact,
            "shapes": shapes,
            "device": "cpu" if reference else self.spec.device,
            "precision": "fp32" if reference else precision,
            "threads": {"intra_op": self.threads, "inter_op": 1},
            "timing": timing,
            "onnxruntime": ORT_SESSION_OPTIONS if runtime.artifact == "onnx" else None,
            "fault": self.spec.fault if runtime.is_null else None,
        }

    # -- one fork ----------------------------------------------------------------------
    def run_fork(self, plan: ModelPlan, job: ForkJob, position: int, loads: dict[Shape, Load],
                 cell_ids: dict[Shape, str], accuracy: tuple[Load, Path] | None = None
                 ) -> tuple[dict[Shape, ForkRecord], dict | None]:
        """Launch one runner process for `job` and record, per shape, what it produced; written to disk.

        With `accuracy` (the corpus and where its embeddings go) the runner also makes one untimed pass over
        that corpus after the timed shapes; its shape entry is returned beside the records (None if it failed).
        """
        runtime = RUNTIMES[job.runtime]
        emb_dir = self.run_dir / "embeddings"
        emb_dir.mkdir(exist_ok=True)
        entries = []
        for x in job.shapes:
            entry = self.shape_entry(x, loads[x], emb_dir / f"{cell_ids[x]}.f{job.fork}.safetensors")
            if not runtime.is_null:  # the first call's output too: a runtime whose answers change after warm-up
                entry["first_embeddings"] = str(emb_dir / f"{cell_ids[x]}.f{job.fork}.first.safetensors")
            entries.append(entry)
        if accuracy:
            entries.append(accuracy_entry(*accuracy))
        request = self.request(plan, runtime, entries, job.modality, precision=job.precision, outputs=job.outputs)
        t = self.spec.timing
        # a corpus pass is never cut short: give it room beyond the time cap
        per_shape = t.max_seconds + t.grace + (600 if self.spec.scenario == "throughput" else 0)
        timeout = t.load_timeout + len(entries) * per_shape
        tower = f"__{job.modality}" if plan.spec.multimodal else ""
        mode = "" if job.outputs == "dense" else f"__{job.outputs}"
        tag = f"{plan.spec.slug}__{plan.choice.source}__{runtime.name}__{job.precision}{tower}{mode}__f{job.fork}"
        before = activity.snapshot()
        outcome = launch(runtime, request, self.run_dir / "work", tag, timeout, self.spec.memory_limit_mb,
                         thread_env(self.threads), gpu=self.spec.device.startswith("cuda"))
        machine = activity.between(before, activity.snapshot())
        result = outcome.result or {}
        runner = {k: result.get(k) for k in ("runner", "framework", "device", "threads", "settings", "load_s")}
        runner["gpu_peak_mb"], runner["gpu_memory_note"] = outcome.gpu_peak_mb, outcome.gpu_memory_note
        reported = result.get("shapes") or []
        error = result.get("error") or {}
        refused = error.get("message") or "unsupported" if error.get("kind") == "unsupported" else None
        mislabelled = None if runtime.is_null or refused or result.get("load_s") is None else \
            label_mismatch(job.precision, result.get("settings") or {})
        records = {}
        for i, x in enumerate(job.shapes):
            shape = reported[i] if i < len(reported) else None
            if shape is not None and (shape.get("batch"), shape.get("seq")) != (x.batch, x.seq):
                shape = None  # out of step with the request: trust nothing
            if refused:
                status, reason = "skipped", refused  # the runtime cannot run this precision/model: not a failure
            elif shape is None:
                status, reason = "failed", outcome.why()
            elif mislabelled:
                status, reason = "failed", mislabelled
            elif shape.get("status") != "ok":
                status, reason = "failed", shape.get("error") or "failed"
            else:
                status, reason = "ok", None
            by_shape = outcome.gpu_peak_by_shape
            mine = {**runner, "gpu_peak_mb": by_shape[i] if by_shape and i < len(by_shape) else None} \
                if by_shape is not None else runner
            rec = ForkRecord(job.fork, position, status, reason, shape, mine, machine, str(outcome.log))
            path = fork_path(self.run_dir, cell_ids[x], job.fork)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, rec.to_dict())
            records[x] = rec
        extra = reported[len(job.shapes)] if accuracy and len(reported) > len(job.shapes) else None
        return records, extra if extra and extra.get("status") == "ok" and extra.get("scenario") == "accuracy" \
            else None
