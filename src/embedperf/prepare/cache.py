"""The prepare cache: one folder per model content + exporter versions, with a manifest.

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
FORMAT_DIRS = {"reference": "reference", "onnx": "onnx", "openvino": "openvino"}
FORMAT_FILES = {"reference": "reference", "onnx": "onnx/model.onnx", "openvino": "openvino/model.xml"}


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

    def artifact_path(self, fmt: str, modality: str | None = None) -> Path:
        """The file a runner opens; a multimodal model has one graph per tower (onnx/<modality>/model.onnx)."""
        path = self.folder / FORMAT_FILES[fmt]
        if modality and fmt in ("onnx", "openvino") and self.manifest.get("towers"):
            path = path.parent / modality / path.name
        return path

    def artifact_sha256(self, fmt: str, modality: str | None = None) -> str | None:
        path = self.artifact_path(fmt, modality)
        return self.manifest["artifacts"][fmt]["files"].get(str(path.relative_to(self.folder / FORMAT_DIRS[fmt])))

    def size_bytes(self, fmt: str, modality: str | None = None) -> int | None:
        """Bytes on disk of what a runner loads for this format (one tower's graph for a multimodal model)."""
        path = self.artifact_path(fmt, modality)
        if fmt == "reference" or not path.exists():
            return None if not path.exists() else dir_size(path)
        # a graph plus its external data / weights beside it
        return sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())

    def has(self, fmt: str) -> bool:
        return fmt in self.manifest.get("artifacts", {})

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

