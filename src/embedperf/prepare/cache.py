"""The prepare cache: one folder per model content + exporter versions, with a manifest.

Formats (what `ensure_prepared` is asked for and what a runner's request points at):

- `reference`, `onnx`, `openvino`: the fp32 artifacts (fp16 and bf16 runs read these and cast);
- `onnx:int8`: dynamic int8 quantization of the ONNX graph (onnx-int8/model.onnx), read by every
  ONNX Runtime binding;
- `openvino:int8`: NNCF static int8, calibrated on the model's workload (openvino-int8/model.xml);
- `openvino:int8w`: NNCF int8 weight compression (openvino-int8w/model.xml), an optional variant.

`format_for(artifact, precision)` names the format a runner needs. Each quantized artifact records
its recipe and the versions of the tools that made it; a recipe or tool version that differs from
the current one makes that artifact missing, so it is rebuilt (the fp32 ones are keyed by the folder).
Framework-free: versions are read from package metadata, not by importing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from embedperf.models.registry import ModelSpec
from embedperf.models.sources import Located

PREPARE_VERSION = 2  # bump when the exported graph changes (2: towers, nested artifact files)
EXPORTERS = ("torch", "transformers", "onnx", "onnxscript", "openvino", "safetensors")
MANIFEST = "manifest.json"
FORMAT_DIRS = {"reference": "reference", "onnx": "onnx", "openvino": "openvino", "onnx:int8": "onnx-int8",
               "openvino:int8": "openvino-int8", "openvino:int8w": "openvino-int8w"}
FORMAT_FILES = {"reference": "reference", "onnx": "onnx/model.onnx", "openvino": "openvino/model.xml",
                "onnx:int8": "onnx-int8/model.onnx", "openvino:int8": "openvino-int8/model.xml",
                "openvino:int8w": "openvino-int8w/model.xml"}
QUANTIZED = ("onnx:int8", "openvino:int8", "openvino:int8w")
# rows of the calibration part of the sentence corpus (workload/sentences.py) NNCF calibrates on
CALIBRATION_ROWS = 300
CALIBRATION_BATCH = 10


def format_for(artifact: str, precision: str) -> str:
    """The prepared format a runner reading `artifact` (onnx | openvino | reference | none) needs at `precision`.

    int8 ONNX and OpenVINO runners read a quantized artifact; torch quantizes the reference itself at
    load (dynamic int8), and fp16/bf16 runs cast the fp32 artifact in the runtime.
    """
    if precision == "int8" and artifact in ("onnx", "openvino"):
        return f"{artifact}:int8"
    return artifact


def base_format(fmt: str) -> str:
    """The fp32 artifact a format is made from (onnx:int8 -> onnx)."""
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


def exporter_versions() -> dict[str, str | None]:
    versions = {}
    for name in EXPORTERS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def prepare_key(spec: ModelSpec, located: Located) -> str:
    """Content hash of everything an artifact depends on."""
    blob = {
        "prepare": PREPARE_VERSION,
        "model": spec.name,
        "family": spec.family,
        "pooling": spec.pooling,
        "dense": [d.__dict__ for d in spec.heads(located.source)],
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

    def artifact_path(self, fmt: str, modality: str | None = None, precision: str = "fp32") -> Path:
        """The file a runner opens; a multimodal model has one graph per tower (onnx/<modality>/model.onnx).

        `fmt` is a runtime's artifact (onnx, openvino, reference) or a prepared format (onnx:int8);
        with `precision` int8 an onnx/openvino artifact resolves to its quantized format.
        """
        fmt = format_for(fmt, precision)
        path = self.folder / FORMAT_FILES[fmt]
        if modality and fmt != "reference" and self.manifest.get("towers"):
            path = path.parent / modality / path.name
        return path

    def artifact_sha256(self, fmt: str, modality: str | None = None, precision: str = "fp32") -> str | None:
        fmt = format_for(fmt, precision)
        path = self.artifact_path(fmt, modality)
        return self.manifest["artifacts"][fmt]["files"].get(str(path.relative_to(self.folder / FORMAT_DIRS[fmt])))

    def size_bytes(self, fmt: str, modality: str | None = None, precision: str = "fp32") -> int | None:
        """Bytes on disk of what a runner loads for this format (one tower's graph for a multimodal model)."""
        path = self.artifact_path(fmt, modality, precision)
        if fmt == "reference" or not path.exists():
            return None if not path.exists() else dir_size(path)
        # a graph plus its external data / weights beside it
        return sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())

    def recipe(self, fmt: str, precision: str = "fp32") -> dict | None:
        """How the artifact a runner reads was quantized (None for fp32 artifacts): recorded in the cell."""
        return self.manifest.get("artifacts", {}).get(format_for(fmt, precision), {}).get("recipe")

    def has(self, fmt: str, precision: str = "fp32") -> bool:
        return format_for(fmt, precision) in self.manifest.get("artifacts", {})

    @property
    def weights_sha256(self) -> str | None:
        return self.manifest.get("weights_sha256")


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_entries(root: Path) -> list[dict]:
    """Every prepared model under the cache root, newest first."""
    entries = []
    current = exporter_versions()
    for folder in sorted((root / "models").glob("*")):
        manifest = read_manifest(folder) or {}
        entries.append({
            "key": folder.name,
            "model": manifest.get("model", "?"),
            "source": manifest.get("source", "?"),
            "artifacts": sorted(manifest.get("artifacts", {})),
            "size_mb": dir_size(folder) / 2**20,
            "created": manifest.get("created", 0),
            "stale": manifest.get("versions") != current,
            "path": str(folder),
        })
    return sorted(entries, key=lambda e: e["created"], reverse=True)


def prune(root: Path, everything: bool = False, keys: list[str] | None = None) -> list[tuple[str, int]]:
    """Remove stale prepared models (exported with other versions), the named keys, or everything."""
    removed = []
    for entry in list_entries(root):
        if everything or entry["stale"] or (keys and entry["key"] in keys):
            size = dir_size(Path(entry["path"]))
            shutil.rmtree(entry["path"], ignore_errors=True)
            removed.append((entry["key"], size))
    if everything:
        for sub in ("workloads",):
            path = root / sub
            if path.exists():
                removed.append((sub, dir_size(path)))
                shutil.rmtree(path, ignore_errors=True)
    return removed

