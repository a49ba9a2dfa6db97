"""What to run: the matrix from the command line or a suite file, validated with clear errors.

Every problem is one line naming the valid choices (the CLI turns it into exit code 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from embedperf.models.registry import MODELS, SOURCES, UnknownModel, get_model, sources_for
from embedperf.runners.registry import ALL, RUNTIMES, UnknownRuntime, get_runtime

PRECISIONS = ("fp32", "fp16", "bf16")
SCENARIOS = ("latency",)
FAULTS = ("crash", "hang", "exit", "oom")


class SpecError(ValueError):
    """A bad request from the user: one line, exit code 2."""


@dataclass
class Timing:
    """How long to measure each shape (all recorded in every result)."""

    warmup: int = 3
    min_calls: int = 10
    min_seconds: float = 2.0
    max_seconds: float = 60.0
    max_calls: int = 20000  # bounds the raw samples of very fast calls (the null runners)
    load_timeout: float = 600.0  # seconds a runner may take to load
    grace: float = 120.0  # per shape, beyond max_seconds, for warm-up and writing

    def for_request(self) -> dict:
        return {"warmup": self.warmup, "min_calls": self.min_calls, "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds, "max_calls": self.max_calls}


@dataclass
class ModelChoice:
    name: str
    source: str
    path: str | None = None
    revision: str | None = None
    truncate_dim: int | None = None


@dataclass
class RunSpec:
    """One run: models x runtimes x shapes on one device and precision."""

    models: list[ModelChoice]
    runtimes: list[str]
    batch: list[int]
    seq: list[int]
    device: str = "cpu"
    precision: str = "fp32"
    scenario: str = "latency"
    threads: int | None = None
    timing: Timing = field(default_factory=Timing)
    memory_limit_mb: float | None = None
    fault: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["models"] = [ModelChoice(**m) for m in d["models"]]
        d["timing"] = Timing(**d.get("timing", {}))
        return cls(**d)


def _ints(value, what: str) -> list[int]:
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise SpecError(f"{what} must be a list of positive integers, got {value!r}")
    out = []
    for item in items:
        try:
            n = int(item)
        except (TypeError, ValueError):
            raise SpecError(f"{what} must be positive integers, got {item!r}") from None
        if n < 1 or str(n) != str(item).strip():
            raise SpecError(f"{what} must be positive integers, got {item!r}")
        out.append(n)
    if not out:
        raise SpecError(f"{what} is empty")
    return sorted(set(out))


def parse_runtimes(value) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    # YAML reads a bare `null` in a runtime list as None: the user meant the null runner.
    names = ["null" if n is None else str(n).strip() for n in names]
    names = [n for n in names if n]
    if not names:
        raise SpecError(f"no runtime given; choose from: {', '.join(RUNTIMES)}, all")
    out: list[str] = []
    for name in names:
        expanded = ALL if name == "all" else (name,)
        for n in expanded:
            try:
                get_runtime(n)
            except UnknownRuntime as e:
                raise SpecError(str(e)) from None
            if n not in out:
                out.append(n)
    return out


def model_choice(name: str, source: str | None, path: str | None = None, revision: str | None = None,
                 truncate_dim: int | None = None) -> ModelChoice:
    try:
        spec = get_model(name)
    except UnknownModel as e:
        raise SpecError(str(e)) from None
    allowed = sources_for(spec)
    if source is None:
        source = "package" if "package" in allowed else "twin"
    if source not in SOURCES:
        raise SpecError(f"unknown source {source!r}; choose from: {', '.join(SOURCES)}")
    if source not in allowed:
        raise SpecError(f"source {source!r} cannot provide {spec.name}; choose from: {', '.join(allowed)}")
    if source == "local" and not path:
        raise SpecError("--source local needs --path to a snapshot folder")
    if path and source != "local":
        raise SpecError("--path is only for --source local")
    if truncate_dim is not None:
        if not spec.matryoshka:
            raise SpecError(f"{spec.name} has no Matryoshka dimensions; drop --truncate-dim")
        if truncate_dim not in spec.matryoshka:
            raise SpecError(f"--truncate-dim for {spec.name} must be one of: {', '.join(map(str, spec.matryoshka))}")
    return ModelChoice(spec.name, source, path, revision, truncate_dim)


def build(models: list[ModelChoice], runtimes, batch, seq, device: str = "cpu", precision: str = "fp32",
          threads: int | None = None, timing: Timing | None = None, memory_limit_mb: float | None = None,
          fault: str | None = None, fault_at_shape: int = 0) -> RunSpec:
    """Validate everything a run needs; raise SpecError with one clear line."""
    names = parse_runtimes(runtimes)
    if precision not in PRECISIONS:
        raise SpecError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise SpecError(f"unknown device {device!r}; choose from: cpu, cuda, cuda:N")
    if threads is not None and threads < 1:
        raise SpecError("--threads must be at least 1")
    fault_doc = None
    if fault is not None:
        if fault not in FAULTS:
            raise SpecError(f"unknown fault {fault!r}; choose from: {', '.join(FAULTS)}")
        if any(not RUNTIMES[n].is_null for n in names):
            raise SpecError("--fault is only for the null runners (null, null-rust, null-cpp)")
        fault_doc = {"kind": fault, "at_shape": fault_at_shape}
    timing = timing or Timing()
    if (timing.max_seconds <= 0 or timing.min_calls < 1 or timing.warmup < 0 or timing.min_seconds < 0
            or timing.max_calls < timing.min_calls):
        raise SpecError("timing: need warmup >= 0, min_calls >= 1, min_seconds >= 0, max_seconds > 0, "
                        "max_calls >= min_calls")
    spec = RunSpec(models=models, runtimes=names, batch=_ints(batch, "batch"), seq=_ints(seq, "seq"),
                   device=device, precision=precision, threads=threads, timing=timing,
                   memory_limit_mb=memory_limit_mb, fault=fault_doc)
    from embedperf.workload.text import ShapeError, check_shape

    for m in models:
        for s in spec.seq:
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    check_shape(get_model(m.name), m.source, s)
            except ShapeError as e:
                raise SpecError(str(e)) from None
    return spec


SUITE_KEYS = {"models", "model", "source", "path", "revision", "truncate_dim", "runtimes", "batch", "seq", "device",
              "precision", "threads", "timing", "memory_limit_mb", "description",
              "machines", "cloud"}  # the last two are read by `embedperf cloud`


def reject_unknown(found, valid, where: str) -> None:
    """One SpecError line naming unknown keys and the valid ones."""
    unknown = set(found) - set(valid)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(valid))}")


def read_suite(path: Path) -> dict:
    """A suite file's YAML mapping, or one clear SpecError."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"suite file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"suite {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"suite {path} must be a mapping of keys ({', '.join(sorted(SUITE_KEYS))})")
    return doc


def load_suite(path: Path, overrides: dict | None = None) -> RunSpec:
    """Read a suite YAML file: the same keys as the command line."""
    doc = read_suite(path)
    reject_unknown(doc, SUITE_KEYS, f"suite {path}")
    doc.update({k: v for k, v in (overrides or {}).items() if v is not None})
    entries = doc.get("models") or [{"name": doc.get("model", next(iter(MODELS)))}]
    models = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise SpecError(f"suite {path}: each entry of models needs a name")
        models.append(model_choice(entry["name"], entry.get("source", doc.get("source")),
                                   entry.get("path", doc.get("path")), entry.get("revision", doc.get("revision")),
                                   entry.get("truncate_dim", doc.get("truncate_dim"))))
    timing_doc = doc.get("timing") or {}
    if not isinstance(timing_doc, dict) or set(timing_doc) - set(Timing.__dataclass_fields__):
        raise SpecError(f"suite {path}: timing takes {', '.join(Timing.__dataclass_fields__)}")
    for key in ("runtimes", "batch", "seq"):
        if key not in doc:
            raise SpecError(f"suite {path} has no {key!r}")
    return build(models, doc["runtimes"], doc["batch"], doc["seq"], doc.get("device", "cpu"),
                 doc.get("precision", "fp32"), doc.get("threads"), Timing(**timing_doc), doc.get("memory_limit_mb"))
