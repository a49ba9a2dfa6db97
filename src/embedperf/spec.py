"""What to run: the matrix from the command line or a suite file, validated with clear errors.

Every problem is one line naming the valid choices (the CLI turns it into exit code 2).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from embedperf.models.registry import (DEFAULT_MODEL, MODELS, OUTPUT_MODES, SOURCES, UnknownModel, get_model,
                                      sources_for)
from embedperf.runners.registry import ALL, RUNTIMES, UnknownRuntime, get_runtime

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
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
    # separate runner processes per cell (None: 3 for latency, 2 for throughput; see orchestrator/plan.py)
    forks: int | None = None
    schedule_seed: int = 0  # seeds the interleaved order of the forks

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
    """One run: models x runtimes x precisions x shapes on one device."""

    models: list[ModelChoice]
    runtimes: list[str]
    batch: list[int]
    seq: list[int]
    device: str = "cpu"
    precision: list[str] = field(default_factory=lambda: ["fp32"])  # an axis: each precision its own cells
    # an axis: what each call returns (registry.OUTPUT_MODES; docs/outputs.md), each mode its own cells
    outputs: list[str] = field(default_factory=lambda: ["dense"])
    scenario: str = "latency"
    threads: int | None = None
    timing: Timing = field(default_factory=Timing)
    memory_limit_mb: float | None = None
    fault: dict | None = None
    images: str | None = None  # a folder of pictures for image towers (default: scikit-image's samples)
    corpus: Corpus = field(default_factory=Corpus)
    calibrate: bool = True  # measure this machine's peak once when no profile exists
    description: str | None = None  # a suite's (or a part's) own words about it
    # real text for the accuracy pass (one sentence per line; default: the standard library's docstrings)
    accuracy_corpus: str | None = None
    texts: str | None = None  # --text FILE: real sentences through the model's tokenizer (workload/texts.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["models"] = [ModelChoice(**m) for m in d["models"]]
        d["timing"] = Timing(**d.get("timing", {}))
        d["corpus"] = Corpus(**(d.get("corpus") or {}))
        if isinstance(d.get("precision"), str):  # a run.json written before precision became an axis
            d["precision"] = [d["precision"]]
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


def _suggest(name: str, choices: dict[str, str]) -> str:
    """'; did you mean X?' for a mistyped name: part of a name, a word of its description, or a close spelling."""
    low = name.lower()
    hits = [c for c, alias in choices.items() if len(low) >= 3 and (low in c.lower() or low in alias.lower())]
    hits += [c for c, words in choices.items() if low in words.lower().replace(",", " ").split()]
    hits += difflib.get_close_matches(low, [c.lower() for c in choices], n=3, cutoff=0.6)
    canon = {c.lower(): c for c in choices}
    hits = list(dict.fromkeys(canon.get(h.lower(), h) for h in hits))
    if not hits:
        return ""
    return f"; did you mean {' or '.join(hits[:3])}?"


def resolve_runtime(name: str) -> str:
    """A runtime's registered name, matched without regard to case; one SpecError line otherwise."""
    if name in RUNTIMES:
        return name
    folded = {n.lower(): n for n in RUNTIMES}
    if name.lower() in folded:
        return folded[name.lower()]
    try:
        get_runtime(name)
    except UnknownRuntime as e:
        hint = _suggest(name, {n: r.description for n, r in RUNTIMES.items()})
        message = str(e)
        if hint:  # the suggestion first, the full list after it
            message = message.replace("; choose from:", f"{hint} Choose from:")
        raise SpecError(message) from None
    return name


def resolve_model(name: str):
    """A model's spec by hub id or short name, matched without regard to case; one SpecError line otherwise."""
    try:
        return get_model(name)
    except UnknownModel as e:
        folded = {}
        for spec in MODELS.values():
            folded.setdefault(spec.name.lower(), spec)
            folded.setdefault(spec.slug.lower(), spec)
        if name.lower() in folded:
            return folded[name.lower()]
        hint = _suggest(name, {spec.name: spec.slug for spec in MODELS.values()})
        message = str(e)
        if hint:
            message = message.replace("; choose from:", f"{hint} Choose from:")
        raise SpecError(message) from None


def parse_precisions(value) -> list[str]:
    """`fp32,bf16,int8` (or a YAML list) as a list in that order, each once; one line naming the choices."""
    return _parse_list(value, PRECISIONS, "precision")


def parse_outputs(value) -> list[str]:
    """`dense,sparse,colbert` (or a YAML list) as output modes in that order, each once; one line naming the
    choices."""
    return _parse_list(value, OUTPUT_MODES, "output mode")


def _parse_list(value, choices, what: str) -> list[str]:
    """A comma-separated string or a YAML list of `choices`, lower-cased, in order, each once."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for name in (str(n).strip().lower() for n in names):
        if not name:
            continue
        if name not in choices:
            raise SpecError(f"unknown {what} {name!r}; choose from: {', '.join(choices)} (a comma-separated "
                            "list runs each)")
        if name not in out:
            out.append(name)
    if not out:
        raise SpecError(f"no {what} given; choose from: {', '.join(choices)}")
    return out


def check_outputs(outputs: list[str], models: list[ModelChoice], scenario: str) -> None:
    """Output modes beyond dense: every model must have their heads, and they run the latency scenario."""
    extra = [o for o in outputs if o != "dense"]
    if not extra:
        return
    if scenario != "latency":
        raise SpecError(f"--outputs {','.join(extra)} runs the latency scenario (a corpus pass returns the dense "
                        "embedding only); drop it or --scenario throughput")
    for m in models:
        spec = get_model(m.name)
        for mode in extra:
            lack = spec.lacks_outputs(mode)
            if lack:
                raise SpecError(f"{lack}: drop --outputs {mode} for it")


def parse_runtimes(value) -> list[str]:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    # YAML reads a bare `null` in a runtime list as None: the user meant the null runner.
    names = ["null" if n is None else str(n).strip() for n in names]
    names = [n for n in names if n]
    if not names:
        raise SpecError(f"no runtime given; choose from: {', '.join(RUNTIMES)}, all")
    out: list[str] = []
    for name in names:
        expanded = ALL if name.lower() == "all" else (resolve_runtime(name),)
        for n in expanded:
            if n not in out:
                out.append(n)
    return out


def model_choice(name: str | None, source: str | None, path: str | None = None, revision: str | None = None,
                 truncate_dim: int | None = None) -> ModelChoice:
    if source is not None and source.lower() in ("hub", "local"):
        return snapshot_choice(name, source.lower(), path, revision, truncate_dim)
    spec = resolve_model(name or DEFAULT_MODEL)
    allowed = sources_for(spec)
    if source is None:
        source = "package" if "package" in allowed else "twin"
    if source not in SOURCES:
        raise SpecError(f"unknown source {source!r}; choose from: {', '.join(SOURCES)}")
    if source not in allowed:
        raise SpecError(f"source {source!r} cannot provide {spec.name}; choose from: {', '.join(allowed)}")
    if path:
        raise SpecError("--path is only for --source local")
    _check_truncation(spec, source, truncate_dim)
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
    _check_truncation(spec, source, truncate_dim)
    return ModelChoice(spec.name, source, path, revision, truncate_dim)


def _check_truncation(spec, source: str, truncate_dim: int | None) -> None:
    """A Matryoshka dim the model publishes and its output (at this source's size) is wider than."""
    if truncate_dim is None:
        return
    if not spec.matryoshka:
        raise SpecError(f"{spec.name} has no Matryoshka dimensions; drop --truncate-dim")
    width = spec.embedding_dim(source)
    allowed = [d for d in spec.matryoshka if d < width]
    if truncate_dim not in allowed:
        raise SpecError(f"--truncate-dim for {spec.name} ({source}, output width {width}) must be one of: "
                        f"{', '.join(map(str, allowed)) or 'none (every Matryoshka dim is not below the width)'}")


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


def _check_timing(timing: Timing) -> None:
    numbers = [timing.min_seconds, timing.max_seconds, timing.load_timeout, timing.grace]
    if timing.target_ci is not None:
        numbers.append(timing.target_ci)
    if not all(math.isfinite(x) for x in numbers):
        raise SpecError("timing: seconds and --target-ci must be finite numbers")
    if timing.target_ci is not None and not (0 <= timing.target_ci < 1):
        raise SpecError(f"--target-ci must be in [0, 1) (0: off), got {timing.target_ci}")
    if (timing.max_seconds <= 0 or timing.min_calls < 1 or timing.warmup < 0 or timing.min_seconds < 0
            or timing.max_calls < timing.min_calls):
        raise SpecError("timing: need warmup >= 0, min_calls >= 1, min_seconds >= 0, max_seconds > 0, "
                        "max_calls >= min_calls")
    if timing.min_seconds > timing.max_seconds:
        raise SpecError(f"--min-seconds {timing.min_seconds:g} is above --max-seconds {timing.max_seconds:g}: "
                        "the time cap would end every shape first")
    if timing.load_timeout <= 0 or timing.grace < 0:
        raise SpecError("timing: need load_timeout > 0 and grace >= 0")
    if timing.forks is not None and (isinstance(timing.forks, bool) or not isinstance(timing.forks, int)
                                     or timing.forks < 1):
        raise SpecError(f"--forks must be a positive integer, got {timing.forks!r}")
    if isinstance(timing.schedule_seed, bool) or not isinstance(timing.schedule_seed, int) or timing.schedule_seed < 0:
        raise SpecError(f"timing.schedule_seed must be a non-negative integer, got {timing.schedule_seed!r}")


def build(models: list[ModelChoice], runtimes, batch, seq, device: str = "cpu", precision="fp32",
          threads: int | None = None, timing: Timing | None = None, memory_limit_mb: float | None = None,
          fault: str | None = None, fault_at_shape: int = 0, scenario: str = "latency", images: str | None = None,
          corpus: Corpus | None = None, calibrate: bool = True,
          description: str | None = None, accuracy_corpus: str | None = None, texts: str | None = None,
          outputs="dense") -> RunSpec:
    """Validate everything a run needs; raise SpecError with one clear line."""
    names = parse_runtimes(runtimes)
    precision = parse_precisions(precision)
    outputs = parse_outputs(outputs)
    check_outputs(outputs, models, scenario)
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise SpecError(f"unknown device {device!r}; choose from: cpu, cuda, cuda:N")
    if threads is not None and threads < 1:
        raise SpecError("--threads must be at least 1")
    if memory_limit_mb is not None and not (math.isfinite(memory_limit_mb) and memory_limit_mb > 0):
        raise SpecError(f"--memory-limit-mb must be a positive number of MB, got {memory_limit_mb}")
    fault_doc = None
    if fault is not None:
        if fault not in FAULTS:
            raise SpecError(f"unknown fault {fault!r}; choose from: {', '.join(FAULTS)}")
        if any(not RUNTIMES[n].is_null for n in names):
            raise SpecError("--fault is only for the null runners (null, null-rust, null-cpp)")
        if fault_at_shape < 0:
            raise SpecError(f"--fault-at-shape must be 0 or more, got {fault_at_shape}")
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
    if accuracy_corpus is not None and not Path(accuracy_corpus).expanduser().is_file():
        raise SpecError(f"--corpus {accuracy_corpus}: not a file (one sentence per line)")
    if images is not None and not Path(images).expanduser().is_dir():
        raise SpecError(f"--images {images}: not a folder")
    corpus = corpus or Corpus()
    if not (math.isfinite(corpus.median) and math.isfinite(corpus.sigma)):
        raise SpecError("corpus: median and sigma must be finite numbers")
    if (corpus.items < 1 or corpus.low < 1 or corpus.high < corpus.low or corpus.sigma < 0 or corpus.median <= 0
            or corpus.seed < 0):
        raise SpecError("corpus: need items >= 1, 1 <= low <= high, sigma >= 0, median > 0, seed >= 0")
    timing = timing or Timing()
    _check_timing(timing)
    spec = RunSpec(models=models, runtimes=names, batch=_ints(batch, "batch"),
                   seq=_ints(seq, "seq") if seq not in (None, [], "") else [],
                   device=device, precision=precision, outputs=outputs, scenario=scenario, threads=threads,
                   timing=timing,
                   memory_limit_mb=memory_limit_mb, fault=fault_doc, images=images, corpus=corpus,
                   calibrate=calibrate, description=description,
                   accuracy_corpus=accuracy_corpus, texts=texts)
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


# -- suite files and command-line overrides ---------------------------------------------------

_INT, _NUM, _STR, _BOOL, _LIST, _MAP = "an integer", "a number", "a string", "true or false", "a list", "a mapping"
# what each key of a suite holds; None is allowed everywhere and means "not set"
SUITE_TYPES = {
    "description": _STR, "model": _STR, "models": _LIST, "source": _STR, "path": _STR, "revision": _STR,
    "truncate_dim": _INT, "runtimes": "a list or comma-separated string", "batch": "integers",
    "seq": "integers", "device": _STR, "precision": "a list or comma-separated string",
    "outputs": "a list or comma-separated string", "threads": _INT,
    "timing": _MAP,
    "memory_limit_mb": _NUM, "scenario": _STR, "images": _STR, "corpus": _MAP, "calibrate": _BOOL,
    "fault": _STR, "fault_at_shape": _INT, "accuracy_corpus": _STR,
    "texts": _STR,
    "parts": _LIST,  # sub-suites run into the same run folder (see part_docs)
    "machines": None, "cloud": None,  # read by `embedperf cloud`
}
SUITE_KEYS = set(SUITE_TYPES)
TIMING_TYPES = {"warmup": _INT, "min_calls": _INT, "min_seconds": _NUM, "max_seconds": _NUM, "max_calls": _INT,
                "target_ci": _NUM, "load_timeout": _NUM, "grace": _NUM, "forks": _INT}
CORPUS_TYPES = {"items": _INT, "median": _NUM, "sigma": _NUM, "low": _INT, "high": _INT, "seed": _INT}
MODEL_ENTRY_TYPES = {"name": _STR, "source": _STR, "path": _STR, "revision": _STR, "truncate_dim": _INT}
MODEL_KEYS = ("source", "path", "revision", "truncate_dim")  # per model, or for every model at the top

# Each `run` option (its Python name) and the suite key it overrides ("section.key" inside a mapping).
# Options the user gave on the command line replace these keys of a suite; the others leave it alone.
OPTION_KEYS = {
    "model": "model", "source": "source", "path": "path", "revision": "revision", "truncate_dim": "truncate_dim",
    "runtimes": "runtimes", "batch": "batch", "seq": "seq", "scenario": "scenario", "corpus_items": "corpus.items",
    "images": "images", "device": "device", "precision": "precision", "outputs": "outputs", "threads": "threads",
    "memory_limit_mb": "memory_limit_mb", "calibrate_machine": "calibrate",
    "fault": "fault", "fault_at_shape": "fault_at_shape", "warmup": "timing.warmup",
    "min_calls": "timing.min_calls", "min_seconds": "timing.min_seconds", "max_seconds": "timing.max_seconds",
    "target_ci": "timing.target_ci", "load_timeout": "timing.load_timeout", "grace": "timing.grace",
    "forks": "timing.forks", "accuracy_corpus": "accuracy_corpus", "text": "texts",
}


def _type_ok(value, kind) -> bool:
    if value is None or kind is None:
        return True
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _LIST:
        return isinstance(value, list)
    if kind == _MAP:
        return isinstance(value, dict)
    if kind == "integers":  # 8, "1,8" or [1, 8]
        return isinstance(value, (int, str, list)) and not isinstance(value, bool)
    return isinstance(value, (str, list))  # runtimes


def check_types(doc: dict, types: dict, where: str) -> None:
    """One SpecError line for the first key whose value has the wrong type (unknown keys first)."""
    reject_unknown(doc, types, where)
    for key, value in doc.items():
        if not _type_ok(value, types[key]):
            raise SpecError(f"{where}: {key} must be {types[key]}, got {value!r}"[:300])


def reject_unknown(found, valid, where: str) -> None:
    """One SpecError line naming unknown keys and the valid ones."""
    unknown = {str(k) for k in found} - {str(k) for k in valid}
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(valid))}")


def read_suite(path: Path) -> dict:
    """A suite file's YAML mapping, or one clear SpecError (with the line and column of a YAML mistake)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"suite file {path} does not exist" if not path.exists() else f"suite {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"suite {path} is not UTF-8 text") from None
    except OSError as e:
        raise SpecError(f"suite {path} cannot be read: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(e.problem or e.context or "malformed").split())
        raise SpecError(f"suite {path} is not valid YAML{where}: {problem}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise SpecError(f"suite {path} is not valid YAML: {' '.join(str(e).split())}"[:300]) from None
    if not isinstance(doc, dict):
        raise SpecError(f"suite {path} must be a mapping of keys ({', '.join(sorted(SUITE_KEYS))})")
    return doc


def apply_overrides(doc: dict, overrides: dict) -> dict:
    """The suite document with the given suite keys replaced (`timing.warmup` names a key of a section).

    `model` replaces the suite's `models` list; a model key (source, path, revision, truncate_dim)
    replaces that key in every entry of `models` too, so the command line wins everywhere.
    """
    doc = dict(doc)
    for key, value in overrides.items():
        section, _, sub = key.rpartition(".")
        if section:
            inner = doc.get(section)
            inner = dict(inner) if isinstance(inner, dict) else {}
            inner[sub] = value
            doc[section] = inner
            continue
        doc[key] = value
        if key == "model":
            doc.pop("models", None)
        if key in MODEL_KEYS and isinstance(doc.get("models"), list):
            doc["models"] = [{k: v for k, v in e.items() if k != key} if isinstance(e, dict) else e
                             for e in doc["models"]]
    return doc


def from_doc(doc: dict, where: str) -> RunSpec:
    """A RunSpec from a suite document (the same keys as the command line), every problem one SpecError line."""
    doc = {k: v for k, v in doc.items() if v is not None}
    check_types(doc, SUITE_TYPES, where)
    if "model" in doc and "models" in doc:
        raise SpecError(f"{where}: give `model` or a `models` list, not both")
    # a local snapshot without a model name is named from its folder (models/resolve.py)
    default_name = None if str(doc.get("source") or "").lower() == "local" else DEFAULT_MODEL
    entries = doc.get("models") or [{"name": doc.get("model", default_name)}]
    models = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not ("name" in entry or "path" in entry):
            raise SpecError(f"{where}: each entry of models needs a name (or, for a local snapshot, a path)")
        check_types(entry, MODEL_ENTRY_TYPES, f"{where}: models[{i}]")
        models.append(model_choice(entry.get("name"), *(entry.get(k, doc.get(k)) for k in MODEL_KEYS)))
    timing_doc = {k: v for k, v in (doc.get("timing") or {}).items()}
    check_types(timing_doc, TIMING_TYPES, f"{where}: timing")
    corpus_doc = doc.get("corpus") or {}
    check_types(corpus_doc, CORPUS_TYPES, f"{where}: corpus")
    for key in ("runtimes", "batch"):
        if key not in doc:
            raise SpecError(f"{where} has no {key!r}")
    timing = Timing(**{k: v for k, v in timing_doc.items() if v is not None or k in ("target_ci", "forks")})
    if timing.target_ci == 0:
        timing.target_ci = None  # 0: off, as on the command line
    return build(models, doc["runtimes"], doc["batch"], doc.get("seq"), doc.get("device", "cpu"),
                 doc.get("precision", "fp32"), doc.get("threads"), timing, doc.get("memory_limit_mb"),
                 fault=doc.get("fault"), fault_at_shape=doc.get("fault_at_shape", 0),
                 scenario=doc.get("scenario", "latency"), images=doc.get("images"),
                 corpus=Corpus(**{k: v for k, v in corpus_doc.items() if v is not None}),
                 calibrate=doc.get("calibrate", True),
                 description=doc.get("description"), accuracy_corpus=doc.get("accuracy_corpus"),
                 texts=doc.get("texts"), outputs=doc.get("outputs", "dense"))


PART_KEYS = SUITE_KEYS - {"parts", "machines", "cloud"}
MERGED_SECTIONS = ("timing", "corpus")  # a part's sections add to the suite's, key by key


def part_docs(doc: dict, where: str) -> list[tuple[dict, str]]:
    """The suite documents of a suite's parts (one, itself, when it has no `parts`).

    Each part is a suite of its own whose keys replace the top-level ones; `timing` and `corpus`
    merge key by key. All parts of a suite run into one run folder, so one `--resume` and one
    `report` cover them.
    """
    parts = doc.get("parts")
    top = {k: v for k, v in doc.items() if k != "parts"}
    if parts is None:
        return [(top, where)]
    if not isinstance(parts, list) or not parts:
        raise SpecError(f"{where}: parts must be a non-empty list of mappings")
    out = []
    for i, part in enumerate(parts):
        here = f"{where}: parts[{i}]"
        if not isinstance(part, dict):
            raise SpecError(f"{here} must be a mapping of suite keys")
        reject_unknown(part, PART_KEYS, here)
        merged = dict(top)
        for key, value in part.items():
            if key in MERGED_SECTIONS and isinstance(value, dict) and isinstance(top.get(key), dict):
                merged[key] = {**top[key], **value}
            else:
                merged[key] = value
                if key == "model":
                    merged.pop("models", None)
                elif key == "models":
                    merged.pop("model", None)
        out.append((merged, here))
    return out


def load_suite(path: Path, overrides: dict | None = None) -> list[RunSpec]:
    """Read a suite YAML file (the same keys as the command line) as the run specs of its parts (one without
    `parts`); `overrides` (suite key -> value, from the command line) win over every part."""
    return [from_doc(apply_overrides(doc, overrides or {}), where)
            for doc, where in part_docs(read_suite(path), f"suite {path}")]
