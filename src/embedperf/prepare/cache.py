"""The prepare cache: one folder per model content + exporter versions, with a manifest.

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
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from embedperf.models.registry import ModelSpec
from embedperf.models.sources import Located

PREPARE_VERSION = 2  # bump when the exported graph changes (2: towers, nested artifact files)
EXPORTERS = ("torch", "transformers", "onnx", "onnxscript", "openvino", "safetensors")
MANIFEST = "manifest.json"
BUILDING = "building.json"  # present while a prepare build writes into the entry: who is building it
FORMAT_DIRS = {"reference": "reference", "onnx": "onnx", "openvino": "openvino"}
FORMAT_FILES = {"reference": "reference", "onnx": "onnx/model.onnx", "openvino": "openvino/model.xml"}


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
