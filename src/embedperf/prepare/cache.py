"""The prepare cache: one folder per model content + exporter versions, with a manifest.

Formats (what `ensure_prepared` is asked for and what a runner's request points at):

- `reference`, `onnx`, `openvino`: the fp32 artifacts (fp16 and bf16 runs read these and cast);
- `onnx:int8`: dynamic int8 quantization of the ONNX graph (onnx-int8/model.onnx), read by every
  ONNX Runtime binding;
- `openvino:int8`: NNCF static int8, calibrated on the model's workload (openvino-int8/model.xml);
- `openvino:int8w`: NNCF int8 weight compression (openvino-int8w/model.xml), an optional variant;
- `onnx+MODE`, `openvino+MODE` (MODE sparse, colbert or all; BGE-M3): the fp32 graph of an output mode,
  returning the sentence embedding and the mode's token outputs (onnx-sparse/model.onnx, ...). One graph per
  mode, because neither ONNX Runtime nor OpenVINO skips the nodes of an output a call does not fetch: a
  dense call on the all-outputs graph would pay for the heads (docs/outputs.md).

`format_for(artifact, precision, outputs)` names the format a runner needs. Each quantized artifact records
its recipe and the versions of the tools that made it; a recipe or tool version that differs from
the current one makes that artifact missing, so it is rebuilt (the fp32 ones are keyed by the folder).
Framework-free: versions are read from package metadata, not by importing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import socket
import struct
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from embedperf.models.registry import OUTPUT_MODES, ModelSpec
from embedperf.models.sources import Located

PREPARE_VERSION = 2  # bump when the exported graph changes (2: towers, nested artifact files)
EXPORTERS = ("torch", "transformers", "onnx", "onnxscript", "openvino", "safetensors")
MANIFEST = "manifest.json"
BUILDING = "building.json"  # present while a prepare build writes into the entry: who is building it
FORMAT_DIRS = {"reference": "reference", "onnx": "onnx", "openvino": "openvino", "onnx:int8": "onnx-int8",
               "openvino:int8": "openvino-int8", "openvino:int8w": "openvino-int8w"}
FORMAT_FILES = {"reference": "reference", "onnx": "onnx/model.onnx", "openvino": "openvino/model.xml",
                "onnx:int8": "onnx-int8/model.onnx", "openvino:int8": "openvino-int8/model.xml",
                "openvino:int8w": "openvino-int8w/model.xml"}
QUANTIZED = ("onnx:int8", "openvino:int8", "openvino:int8w")
# the graphs of the output modes beyond dense (fp32 only: docs/outputs.md)
MODE_FORMATS = tuple(f"{base}+{mode}" for base in ("onnx", "openvino") for mode in OUTPUT_MODES if mode != "dense")
for _fmt in MODE_FORMATS:
    _base, _mode = _fmt.split("+")
    FORMAT_DIRS[_fmt] = f"{_base}-{_mode}"
    FORMAT_FILES[_fmt] = f"{_base}-{_mode}/model.{'onnx' if _base == 'onnx' else 'xml'}"
# rows of the calibration part of the sentence corpus (workload/sentences.py) NNCF calibrates on
CALIBRATION_ROWS = 300
CALIBRATION_BATCH = 10


def format_for(artifact: str, precision: str, outputs: str = "dense") -> str:
    """The prepared format a runner reading `artifact` (onnx | openvino | reference | none) needs at `precision`
    for output mode `outputs`.

    int8 ONNX and OpenVINO runners read a quantized artifact; torch quantizes the reference itself at
    load (dynamic int8), and fp16/bf16 runs cast the fp32 artifact in the runtime. An output mode beyond
    dense has a graph of its own (fp32: the orchestrator skips its other precisions); the reference folder
    holds every head.
    """
    if outputs != "dense" and artifact in ("onnx", "openvino"):
        if precision != "fp32":
            raise ValueError(f"output mode {outputs} has no {precision} artifact (fp32 only)")
        return f"{artifact}+{outputs}"
    if precision == "int8" and artifact in ("onnx", "openvino"):
        return f"{artifact}:int8"
    return artifact


def mode_of(fmt: str) -> str:
    """The output mode of a prepared format (onnx+sparse -> sparse; dense for the others)."""
    return fmt.split(":")[0].partition("+")[2] or "dense"


def base_format(fmt: str) -> str:
    """The fp32 artifact a format is made from (onnx:int8 -> onnx; an output mode's graph is its own: onnx+sparse)."""
    return fmt.split(":")[0]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def recipe(fmt: str, flags: list[str] | None = None) -> dict | None:
    """How a quantized format is made, with the versions of the tools that make it (None for fp32 formats).

    onnx:int8 follows sentence-transformers' export_dynamic_quantized_onnx_model: per-channel int8
    MatMul weights, 8-bit embedding tables (Gather), activations quantized per call (u8). On a CPU
    without VNNI the weights use 7 bits (reduce_range), as ONNX Runtime advises, because the int16
    intermediate of vpmaddubsw can saturate with full-range u8 x s8 products.
    """
    from embedperf.precision import NATIVE_FLAGS, cpu_flags

    if fmt == "onnx:int8":
        have = set(cpu_flags() if flags is None else flags)
        vnni = bool(set(NATIVE_FLAGS["int8"]) & have)
        return {"tool": "onnxruntime.quantization.quantize_dynamic", "op_types": ["MatMul", "Gather"],
                "weight_type": "QInt8", "per_channel": True, "reduce_range": not vnni,
                "gather": "embedding tables u8 per tensor, dequantized after the lookup (ONNX Runtime's choice)",
                "activations": "u8, quantized per call (DynamicQuantizeLinear)",
                "versions": {"onnxruntime": _version("onnxruntime"), "onnx": _version("onnx")}}
    if fmt == "openvino:int8":
        from embedperf.workload.sentences import SENTENCES_VERSION

        return {"tool": "nncf.quantize", "model_type": "transformer", "preset": "mixed",
                "weights": "int8 symmetric per channel", "activations": "int8 (u8 asymmetric where mixed)",
                "calibration_rows": CALIBRATION_ROWS, "calibration_batch": CALIBRATION_BATCH,
                "calibration_data": "the calibration part of workload/sentences.py (real sentences through the "
                                    "model's tokenizer; seeded ids without one; image towers: sample photographs "
                                    "then seeded synthetic pictures)",
                "sentences_version": SENTENCES_VERSION,
                "versions": {"nncf": _version("nncf"), "openvino": _version("openvino")}}
    if fmt == "openvino:int8w":
        return {"tool": "nncf.compress_weights", "mode": "int8_asym", "weights": "int8 asymmetric per channel",
                "activations": "float (the CPU plugin may quantize them per call)",
                "versions": {"nncf": _version("nncf"), "openvino": _version("openvino")}}
    return None


def recipe_id(fmt: str) -> str | None:
    """A short hash of a format's current recipe (None for fp32 formats)."""
    r = recipe(fmt)
    return None if r is None else hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def is_current(fmt: str, manifest: dict) -> bool:
    """Whether the manifest holds `fmt`, built with the current recipe and tool versions."""
    entry = manifest.get("artifacts", {}).get(fmt)
    return entry is not None and entry.get("recipe_id") == recipe_id(fmt)


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple:
    """Package metadata is slow to read (ms per package): read it once per process."""
    versions = []
    for name in EXPORTERS:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, None))
    return tuple(versions)


def exporter_versions() -> dict[str, str | None]:
    return dict(_installed_versions())


def prepare_key(spec: ModelSpec, located: Located) -> str:
    """Content hash of everything an artifact depends on."""
    blob = {
        "prepare": PREPARE_VERSION,
        "model": spec.name,
        "family": spec.family,
        "pooling": spec.pooling,
        "dense": [d.__dict__ for d in spec.heads(located.source)],
        **({"token_heads": list(spec.extra_outputs)} if spec.extra_outputs else {}),
        "source": located.source,
        "identity": located.identity,
        "versions": exporter_versions(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Prepared:
    """A model's prepared folder and what it holds."""

    folder: Path
    manifest: dict

    def artifact_path(self, fmt: str, modality: str | None = None, precision: str = "fp32",
                      outputs: str = "dense") -> Path:
        """The file a runner opens; a multimodal model has one graph per tower (onnx/<modality>/model.onnx).

        `fmt` is a runtime's artifact (onnx, openvino, reference) or a prepared format (onnx:int8);
        with `precision` int8 an onnx/openvino artifact resolves to its quantized format, with `outputs`
        beyond dense to that output mode's graph.
        """
        fmt = format_for(fmt, precision, outputs)
        path = self.folder / FORMAT_FILES[fmt]
        if modality and fmt != "reference" and self.manifest.get("towers"):
            path = path.parent / modality / path.name
        return path

    def artifact_sha256(self, fmt: str, modality: str | None = None, precision: str = "fp32",
                        outputs: str = "dense") -> str | None:
        fmt = format_for(fmt, precision, outputs)
        path = self.artifact_path(fmt, modality)
        return self.manifest["artifacts"][fmt]["files"].get(str(path.relative_to(self.folder / FORMAT_DIRS[fmt])))

    def size_bytes(self, fmt: str, modality: str | None = None, precision: str = "fp32",
                   outputs: str = "dense") -> int | None:
        """Bytes on disk of what a runner loads for this format (one tower's graph or weights for a multimodal model)."""
        path = self.artifact_path(fmt, modality, precision, outputs)
        if not path.exists():
            return None
        if fmt == "reference":
            if modality and self.manifest.get("towers"):
                # torch and candle read one tower's tensors out of the shared checkpoint
                return tower_bytes(path / "model.safetensors", modality)
            return dir_size(path)
        # a graph plus its external data / weights beside it
        return sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())

    def recipe(self, fmt: str, precision: str = "fp32", outputs: str = "dense") -> dict | None:
        """How the artifact a runner reads was quantized (None for fp32 artifacts): recorded in the cell."""
        return self.manifest.get("artifacts", {}).get(format_for(fmt, precision, outputs), {}).get("recipe")

    def has(self, fmt: str, precision: str = "fp32", outputs: str = "dense") -> bool:
        return format_for(fmt, precision, outputs) in self.manifest.get("artifacts", {})

    @property
    def weights_sha256(self) -> str | None:
        return self.manifest.get("weights_sha256")


# what each tower's tensors are called in a transformers CLIP/SigLIP checkpoint (SigLIP's heads live inside)
TOWER_PREFIXES = {"text": ("text_model.", "text_projection."), "image": ("vision_model.", "visual_projection.")}


def tower_bytes(checkpoint: Path, modality: str) -> int:
    """Bytes of one tower's tensors in a safetensors checkpoint, read from its header (no framework)."""
    with open(checkpoint, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    prefixes = TOWER_PREFIXES[modality]
    return sum(end - start for name, t in header.items() if name != "__metadata__" and name.startswith(prefixes)
               for start, end in [t["data_offsets"]])


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def dir_size(path: Path) -> int:
    """Bytes under a folder; files a running build moves or deletes meanwhile count as nothing."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):  # os.walk skips folders that vanish under it
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


# -- entries being built ------------------------------------------------------------------
def _process_record(pid: int) -> dict:
    import psutil

    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def _alive(record: dict) -> bool:
    """Whether the process a record names still runs (the same process, not a reused pid)."""
    import psutil

    try:
        return abs(psutil.Process(record["pid"]).create_time() - record["started"]) < 1.0
    except (psutil.Error, KeyError, TypeError):
        return False


def builder(folder: Path) -> dict | None:
    """The marker of a build still writing into this entry, or None (none, or its processes are gone).

    A marker from another host cannot be checked from here: it counts as live, so that nothing
    deletes work in progress on a shared cache.
    """
    try:
        mark = json.loads((folder / BUILDING).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {"host": "?", "processes": [], "note": "unreadable marker"}
    if not isinstance(mark, dict):
        return None
    if mark.get("host") != socket.gethostname():
        return mark
    return mark if any(_alive(r) for r in mark.get("processes", []) if isinstance(r, dict)) else None


def _write_marker(path: Path, mark: dict, exclusive: bool) -> bool:
    tmp = path.with_name(f".{BUILDING}.{os.getpid()}")
    tmp.write_text(json.dumps(mark))
    try:
        if not exclusive:
            tmp.replace(path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails when another builder got there first
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


class BuildMark:
    """This process's claim on an entry while it builds; `add(pid)` names a build subprocess too."""

    def __init__(self, folder: Path):
        self.path = folder / BUILDING
        self.mark = {"host": socket.gethostname(), "processes": [_process_record(os.getpid())],
                     "since": time.time()}

    def add(self, pid: int) -> None:
        try:
            self.mark["processes"].append(_process_record(pid))
        except Exception:  # the build already ended: nothing to name
            return
        _write_marker(self.path, self.mark, exclusive=False)


@contextlib.contextmanager
def building(folder: Path, say=print, poll_s: float = 2.0):
    """Hold the entry's build marker while the body builds; wait while another live build holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    mark = BuildMark(folder)
    told = False
    while not _write_marker(mark.path, mark.mark, exclusive=True):
        other = builder(folder)
        if other is None:  # left by a build that died: take over
            mark.path.unlink(missing_ok=True)
            continue
        if not told:
            pids = ", ".join(str(r.get("pid")) for r in other.get("processes", []))
            say(f"prepare: waiting: cache {folder.name} is being built by another process ({pids})")
            told = True
        time.sleep(poll_s)
    try:
        yield mark
    finally:
        mark.path.unlink(missing_ok=True)


# -- listing and pruning ----------------------------------------------------------------------
def list_entries(root: Path) -> list[dict]:
    """Every prepared model under the cache root, newest first.

    An entry being built is never stale; one with no manifest and no live builder is an
    interrupted build (stale: nothing can use it).
    """
    entries = []
    current = exporter_versions()
    for folder in sorted((root / "models").glob("*")):
        if not folder.is_dir():
            continue
        manifest = read_manifest(folder) or {}
        build = builder(folder)
        entries.append({
            "key": folder.name,
            "model": manifest.get("model", "?"),
            "source": manifest.get("source", "?"),
            "artifacts": sorted(manifest.get("artifacts", {})),
            "size_mb": dir_size(folder) / 2**20,
            "created": manifest.get("created", 0),
            "building": build,
            "incomplete": not manifest and build is None,
            "stale": build is None and manifest.get("versions") != current,
            "path": str(folder),
        })
    return sorted(entries, key=lambda e: e["created"], reverse=True)


def prune_candidates(root: Path, everything: bool = False, keys: list[str] | None = None
                     ) -> tuple[list[dict], list[dict]]:
    """(what prune would remove, the entries it keeps because a build is writing into them).

    Without `everything` or `keys`: the stale entries (other exporter versions, interrupted builds).
    """
    remove, busy = [], []
    for entry in list_entries(root):
        if everything or keys:
            wanted = everything or entry["key"] in keys
        else:
            wanted = entry["stale"]
        if not wanted:
            continue
        (busy if entry["building"] else remove).append(entry)
    if everything:
        path = root / "workloads"
        if path.exists():
            remove.append({"key": "workloads", "model": "seeded workloads", "source": "-", "path": str(path),
                           "size_mb": dir_size(path) / 2**20, "building": None, "stale": False,
                           "incomplete": False, "artifacts": []})
    return remove, busy


def remove_entries(entries: list[dict]) -> list[tuple[str, int]]:
    """Delete the given entries, except one a build started on since it was listed."""
    removed = []
    for entry in entries:
        path = Path(entry["path"])
        if entry["key"] != "workloads" and builder(path):
            continue
        size = dir_size(path) if path.exists() else 0
        shutil.rmtree(path, ignore_errors=True)
        removed.append((entry["key"], size))
    return removed


def prune(root: Path, everything: bool = False, keys: list[str] | None = None) -> list[tuple[str, int]]:
    """Remove stale prepared models (other versions, interrupted builds), the named keys, or everything;
    never an entry being built."""
    return remove_entries(prune_candidates(root, everything, keys)[0])
