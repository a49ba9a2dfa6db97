"""How a report groups cells so that setups never mix: a setup, a shape, the newest cell per key, versions.

A *setup* is everything that changes what a runtime's figure means apart from the runtime itself:
model, source (and so real or random weights), precision, device, thread budget, scenario and the
machine. Verdicts compare runtimes only inside one setup and one shape; cells of other setups get
their own verdicts, tables and figure panels, never a shared one. Precision is the one axis compared
across setups, always against the PyTorch fp32 cell of the same model, shape, device, threads and machine.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

RUNTIME_ORDER = ["torch", "onnxruntime-python", "onnxruntime-cpp", "onnxruntime-rust", "candle", "openvino",
                 "null", "null-rust", "null-cpp"]
PRECISION_ORDER = ["fp32", "bf16", "fp16", "int8"]
MODALITY_ORDER = {"text": 0, "image": 1}
OUTPUTS_ORDER = {"dense": 0, "sparse": 1, "colbert": 2, "all": 3}  # registry.OUTPUT_MODES
CORPUS_ORDER = {None: 0, "sorted": 1, "unsorted": 2}
BASELINE = ("torch", "fp32")  # what every speedup is measured against


def runtime_rank(name: str) -> int:
    return RUNTIME_ORDER.index(name) if name in RUNTIME_ORDER else 99


def precision_rank(name: str) -> int:
    return PRECISION_ORDER.index(name) if name in PRECISION_ORDER else 99


@dataclass(frozen=True, order=True)
class Machine:
    """The machine a cell ran on, as far as its figures depend on it."""

    cpu_model: str
    cpus: int
    gpu: str = ""

    @classmethod
    def of(cls, doc: dict) -> "Machine":
        m = doc.get("machine") or {}
        gpus = m.get("gpus") or []
        device = (doc.get("spec") or {}).get("device") or "cpu"
        gpu = ", ".join(sorted({g.get("name", "?") for g in gpus})) if device.startswith("cuda") and gpus else ""
        return cls(str(m.get("cpu_model") or "unknown CPU"), int(m.get("cpus_available") or 0), gpu)

    @property
    def label(self) -> str:
        text = f"{self.cpu_model} ({self.cpus} CPUs)" if self.cpus else self.cpu_model
        return f"{text}, {self.gpu}" if self.gpu else text


@dataclass(frozen=True, order=True)
class Setup:
    """One model measured one way: the unit a verdict compares runtimes within."""

    model: str
    source: str
    precision: str
    device: str
    threads: int
    scenario: str
    machine: Machine
    weights: str = ""

    @classmethod
    def of(cls, doc: dict) -> "Setup":
        spec = doc["spec"]
        return cls(spec["model"], spec["source"], spec.get("precision") or "fp32", spec.get("device") or "cpu",
                   int((spec.get("threads") or {}).get("intra_op") or 0), spec.get("scenario") or "latency",
                   Machine.of(doc), (doc.get("model") or {}).get("weights") or "")

    @property
    def slug(self) -> str:
        return self.model.split("/")[-1]

    def baseline(self) -> "Setup":
        """The setup the speedups of this one are measured against: the same but fp32."""
        return Setup(self.model, self.source, BASELINE[1], self.device, self.threads, self.scenario, self.machine,
                     self.weights)

    @property
    def bench(self) -> tuple:
        """What a cross-model comparison needs equal: everything but the model and source."""
        return (self.precision, self.device, self.threads, self.machine)

    @property
    def label(self) -> str:
        """model (source, weights), precision, device, threads: the words a reader sees."""
        weights = f", weights {self.weights}" if self.weights else ""
        return f"{self.slug} ({self.source}{weights}), {self.precision}, {self.device}, {self.threads} thr"

    def sort_key(self) -> tuple:
        return (self.machine, self.device, self.threads, self.model, self.source, precision_rank(self.precision),
                self.scenario != "latency")


@dataclass(frozen=True)
class Shape:
    """The input of one cell: tower, batch, length (or corpus order) and Matryoshka cut; and the output mode its
    calls return (dense, or BGE-M3's sparse / colbert / all beside it), so runtimes compare within one mode."""

    modality: str
    batch: int
    seq: int
    order: str | None = None
    truncate_dim: int | None = None
    tower: bool = False  # a multimodal model's tower: its length is the model's, not a choice
    outputs: str = "dense"

    @classmethod
    def of(cls, doc: dict, multimodal: bool = False) -> "Shape":
        spec = doc["spec"]
        return cls(spec.get("modality") or "text", int(spec["batch"]), int(spec["seq"]), spec.get("order"),
                   spec.get("truncate_dim"), multimodal or spec.get("modality") == "image",
                   spec.get("outputs") or "dense")

    @property
    def label(self) -> str:
        """8×128, 8×77 text, 8 img 224px, b32 sorted (as the matrix tables say it)."""
        if self.order:
            text = f"b{self.batch} {self.order}"
        elif self.modality == "image":
            text = f"{self.batch} img {self.seq}px"
        elif self.tower:
            text = f"{self.batch}×{self.seq} text"
        else:
            text = f"{self.batch}×{self.seq}"
        return (text + (f" d{self.truncate_dim}" if self.truncate_dim else "")
                + (f" {self.outputs}" if self.outputs != "dense" else ""))

    def sort_key(self) -> tuple:
        return (self.order is not None, MODALITY_ORDER.get(self.modality, 9), self.batch, self.seq,
                CORPUS_ORDER.get(self.order, 9), self.truncate_dim or 0, OUTPUTS_ORDER.get(self.outputs, 9))


def is_document(cell: dict) -> bool:
    """A stored cell document (with forks), not a flat row of `report --format json`."""
    return "schema" in cell and "spec" in cell


def multimodal_names(docs: list[dict]) -> set[str]:
    """Models among the documents with more than one tower (an image cell present, or so in the registry)."""
    return towers_of({d["spec"]["model"] for d in docs},
                     {d["spec"]["model"] for d in docs if d["spec"].get("modality") == "image"})


def towers_of(models: set[str], with_image_cell: set[str]) -> set[str]:
    """The multimodal ones among `models`: those with an image cell, and those the registry says have towers
    (a run of only their text tower is still a tower's cells)."""
    from embedperf.models.registry import UnknownModel, get_model

    out = set(with_image_cell)
    for name in models - out:
        try:
            if get_model(name).multimodal:
                out.add(name)
        except UnknownModel:
            pass
    return out


def newest(docs: list[dict]) -> tuple[list[dict], int]:
    """One document per (setup, shape, runtime): the newest when runs repeat a cell; and how many were set aside."""
    multimodal = multimodal_names(docs)
    best: dict[tuple, dict] = {}
    for d in docs:
        key = (Setup.of(d), Shape.of(d, d["spec"]["model"] in multimodal), d["spec"]["runtime"])
        if key not in best or (d.get("created") or "") > (best[key].get("created") or ""):
            best[key] = d
    return list(best.values()), len(docs) - len(best)


def by_setup(docs: list[dict]) -> dict[Setup, dict[Shape, dict[str, dict]]]:
    """setup -> shape -> runtime -> document, sorted by machine, device, threads, model, precision; shapes small
    first."""
    multimodal = multimodal_names(docs)
    out: dict[Setup, dict[Shape, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for d in docs:
        out[Setup.of(d)][Shape.of(d, d["spec"]["model"] in multimodal)][d["spec"]["runtime"]] = d
    return {s: {sh: dict(sorted(rts.items(), key=lambda kv: runtime_rank(kv[0])))
                for sh, rts in sorted(shapes.items(), key=lambda kv: kv[0].sort_key())}
            for s, shapes in sorted(out.items(), key=lambda kv: kv[0].sort_key())}


def framework_label(framework: dict | None) -> str | None:
    """`onnxruntime 1.32.0 (python binding)`, `torch 2.8.0, transformers 4.56.0`: what ran the model."""
    if not framework or not framework.get("name") or framework.get("name") == "unknown":
        return None
    text = f"{framework['name']} {framework.get('version') or '?'}"
    extras = []
    if framework.get("transformers"):
        extras.append(f"transformers {framework['transformers']}")
    binding = str(framework.get("binding") or "")
    own = f"{framework['name']} {framework.get('version')}"
    if binding and binding != own:
        # "python onnxruntime 1.32.0" says only which binding; "ort 2.0.0-rc.15" names the binding's own version
        extras.append(binding.replace(own, "").strip() + " binding" if own in binding else binding)
    return text + (f" ({', '.join(extras)})" if extras else "")


def versions_line(docs: list[dict]) -> str | None:
    """One line naming every runtime's framework and the harness: `versions: torch: torch 2.8.0 (...); ...`."""
    per_runtime: dict[str, set[str]] = defaultdict(set)
    harness = set()
    for d in docs:
        v = d.get("versions") or {}
        label = framework_label(v.get("framework"))
        if label and not d["spec"]["runtime"].startswith("null"):
            per_runtime[d["spec"]["runtime"]].add(label)
        if v.get("embedperf"):
            commit = ((d.get("project") or {}).get("commit") or "")[:10]
            dirty = " dirty" if (d.get("project") or {}).get("dirty") else ""
            harness.add(f"embedperf {v['embedperf']}" + (f" @ {commit}{dirty}" if commit else "")
                        + (f", python {v['python']}" if v.get("python") else ""))
    if not per_runtime and not harness:
        return None
    parts = [f"{rt}: {' / '.join(sorted(labels))}"
             for rt, labels in sorted(per_runtime.items(), key=lambda kv: runtime_rank(kv[0]))]
    return "versions: " + "; ".join(parts + sorted(harness))
