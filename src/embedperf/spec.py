"""What to run: the matrix from the command line or a suite file, validated with clear errors.

Every problem is one line naming the valid choices (the CLI turns it into exit code 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from embedperf.models.registry import DEFAULT_MODEL, MODELS, SOURCES, UnknownModel, get_model, sources_for
from embedperf.runners.registry import ALL, RUNTIMES, UnknownRuntime, get_runtime

PRECISIONS = ("fp32", "fp16", "bf16")
SCENARIOS = ("latency", "throughput")
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
    # stop once the 95% bootstrap CI of the median is within ±target_ci of it (0 or None: at min_calls/min_seconds)
    target_ci: float | None = 0.01
    load_timeout: float = 600.0  # seconds a runner may take to load
    grace: float = 120.0  # per shape, beyond max_seconds, for warm-up and writing

    def for_request(self) -> dict:
        return {"warmup": self.warmup, "min_calls": self.min_calls, "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds, "max_calls": self.max_calls, "target_ci": self.target_ci or None}


@dataclass
class Corpus:
    """The throughput scenario's corpus: seeded log-normal token lengths, clipped to [low, min(high, model max)]."""

    items: int = 1024
    median: float = 64.0
    sigma: float = 0.8
    low: int = 8
    high: int = 512
    seed: int = 0


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
    images: str | None = None  # a folder of pictures for image towers (default: scikit-image's samples)
    corpus: Corpus = field(default_factory=Corpus)
    calibrate: bool = True  # measure this machine's peak once when no profile exists
    texts: str | None = None  # --text FILE: real sentences through the model's tokenizer (workload/texts.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["models"] = [ModelChoice(**m) for m in d["models"]]
        d["timing"] = Timing(**d.get("timing", {}))
        d["corpus"] = Corpus(**(d.get("corpus") or {}))
        for m in d["models"]:
            if m.source in ("hub", "local"):
                _resolve_snapshot(m.name, m.source, m.path, m.revision)  # so get_model finds it again
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


def model_choice(name: str | None, source: str | None, path: str | None = None, revision: str | None = None,
                 truncate_dim: int | None = None) -> ModelChoice:
    if source in ("hub", "local"):
        return snapshot_choice(name, source, path, revision, truncate_dim)
    name = name or DEFAULT_MODEL
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
    if path:
        raise SpecError("--path is only for --source local")
    _check_truncation(spec, truncate_dim)
    return ModelChoice(spec.name, source, path, revision, truncate_dim)


# -- models read from their own snapshot (models/snapshot.py, models/resolve.py) --------------------------

def _resolve_snapshot(name: str | None, source: str, path: str | None, revision: str | None):
    from embedperf.models.resolve import resolve
    from embedperf.models.snapshot import SnapshotError

    try:
        return resolve(name, source, path, revision)
    except (SnapshotError, UnknownModel) as e:
        raise SpecError(str(e)) from None


def snapshot_choice(name: str | None, source: str, path: str | None, revision: str | None,
                    truncate_dim: int | None) -> ModelChoice:
    """Any model of a family embedperf implements, from the hub or a local snapshot folder (unnamed local
    snapshots are named from their folder, or after the registry model whose checked weights they hold)."""
    if source == "local" and not path:
        raise SpecError("--source local needs --path to a snapshot folder")
    if path and source != "local":
        raise SpecError("--path is only for --source local")
    if source == "hub" and not name:
        name = DEFAULT_MODEL
    spec = _resolve_snapshot(name, source, path, revision)
    _check_truncation(spec, truncate_dim)
    return ModelChoice(spec.name, source, path, revision, truncate_dim)


def _check_truncation(spec, truncate_dim: int | None) -> None:
    if truncate_dim is not None:
        if not spec.matryoshka:
            raise SpecError(f"{spec.name} has no Matryoshka dimensions; drop --truncate-dim")
        if truncate_dim not in spec.matryoshka:
            raise SpecError(f"--truncate-dim for {spec.name} must be one of: {', '.join(map(str, spec.matryoshka))}")


def check_texts(texts: str, models: list[ModelChoice], scenario: str) -> None:
    """--text FILE: a readable file of texts, a latency run, and a tokenizer for every model."""
    from embedperf.workload.texts import TextsError, read_texts, tokenizer_for

    try:
        read_texts(Path(texts))
        if scenario != "latency":
            raise SpecError("--text feeds the latency scenario (one batch of real texts per cell); "
                            "drop it or --scenario throughput")
        for m in models:
            spec = get_model(m.name)
            if spec.multimodal:
                raise SpecError(f"--text is for text embedding models; {spec.name}'s text tower reads its captions")
            tokenizer_for(spec, m.source, m.path, m.revision)
    except TextsError as e:
        raise SpecError(str(e)) from None


def build(models: list[ModelChoice], runtimes, batch, seq, device: str = "cpu", precision: str = "fp32",
          threads: int | None = None, timing: Timing | None = None, memory_limit_mb: float | None = None,
          fault: str | None = None, fault_at_shape: int = 0, scenario: str = "latency", images: str | None = None,
          corpus: Corpus | None = None, calibrate: bool = True, texts: str | None = None) -> RunSpec:
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
    if scenario not in SCENARIOS:
        raise SpecError(f"unknown scenario {scenario!r}; choose from: {', '.join(SCENARIOS)}")
    specs_ = [get_model(m.name) for m in models]
    multimodal = [s.name for s in specs_ if s.multimodal]
    if multimodal and seq not in (None, [], ""):
        raise SpecError(f"{multimodal[0]}'s text length is fixed by the model and its images are "
                        f"{get_model(multimodal[0]).image_size}px: drop --seq / seq for it")
    if multimodal and scenario == "throughput":
        raise SpecError("the throughput scenario is for text embedding models; "
                        f"{multimodal[0]} runs the latency scenario")
    if texts is not None:
        check_texts(texts, models, scenario)  # without --seq each batch is padded to its longest text
    elif seq in (None, [], "") and len(multimodal) < len(models):
        seq = [16, 128] if scenario == "latency" else [1]
    if scenario == "throughput":
        seq = [1]  # a corpus has its own lengths: the seq axis is unused
    if images is not None and not Path(images).expanduser().is_dir():
        raise SpecError(f"--images {images}: not a folder")
    corpus = corpus or Corpus()
    if corpus.items < 1 or corpus.low < 1 or corpus.high < corpus.low or corpus.sigma < 0 or corpus.median <= 0:
        raise SpecError("corpus: need items >= 1, 1 <= low <= high, sigma >= 0, median > 0")
    timing = timing or Timing()
    if timing.target_ci is not None and not (0 <= timing.target_ci < 1):
        raise SpecError(f"--target-ci must be in [0, 1) (0: off), got {timing.target_ci}")
    if (timing.max_seconds <= 0 or timing.min_calls < 1 or timing.warmup < 0 or timing.min_seconds < 0
            or timing.max_calls < timing.min_calls):
        raise SpecError("timing: need warmup >= 0, min_calls >= 1, min_seconds >= 0, max_seconds > 0, "
                        "max_calls >= min_calls")
    spec = RunSpec(models=models, runtimes=names, batch=_ints(batch, "batch"),
                   seq=_ints(seq, "seq") if seq not in (None, [], "") else [],
                   device=device, precision=precision, scenario=scenario, threads=threads, timing=timing,
                   memory_limit_mb=memory_limit_mb, fault=fault_doc, images=images, corpus=corpus,
                   calibrate=calibrate, texts=texts)
    from embedperf.workload.text import ShapeError, check_shape

    for m in models:
        if get_model(m.name).multimodal or scenario == "throughput":
            continue
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
              "precision", "threads", "timing", "memory_limit_mb", "description", "scenario", "images", "corpus",
              "texts", "machines", "cloud"}  # the last two are read by `embedperf cloud`


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
    # a local snapshot without a model name is named from its folder (models/resolve.py)
    default_name = None if doc.get("source") == "local" else next(iter(MODELS))
    entries = doc.get("models") or [{"name": doc.get("model", default_name)}]
    models = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not ("name" in entry or "path" in entry):
            raise SpecError(f"suite {path}: each entry of models needs a name (or, for a local snapshot, a path)")
        models.append(model_choice(entry.get("name"), entry.get("source", doc.get("source")),
                                   entry.get("path", doc.get("path")), entry.get("revision", doc.get("revision")),
                                   entry.get("truncate_dim", doc.get("truncate_dim"))))
    timing_doc = doc.get("timing") or {}
    if not isinstance(timing_doc, dict) or set(timing_doc) - set(Timing.__dataclass_fields__):
        raise SpecError(f"suite {path}: timing takes {', '.join(Timing.__dataclass_fields__)}")
    corpus_doc = doc.get("corpus") or {}
    if not isinstance(corpus_doc, dict) or set(corpus_doc) - set(Corpus.__dataclass_fields__):
        raise SpecError(f"suite {path}: corpus takes {', '.join(Corpus.__dataclass_fields__)}")
    for key in ("runtimes", "batch"):
        if key not in doc:
            raise SpecError(f"suite {path} has no {key!r}")
    return build(models, doc["runtimes"], doc["batch"], doc.get("seq"), doc.get("device", "cpu"),
                 doc.get("precision", "fp32"), doc.get("threads"), Timing(**timing_doc), doc.get("memory_limit_mb"),
                 scenario=doc.get("scenario", "latency"), images=doc.get("images"), corpus=Corpus(**corpus_doc),
                 texts=doc.get("texts"))
