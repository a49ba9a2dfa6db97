"""Which ModelSpec a model choice means: a registry entry, or the model a snapshot holds, read from its files.

- twin, tiny, package: the registry's entry (its bundled configs, its package).
- local, hub: the spec is read from the snapshot (models/snapshot.py). When the snapshot is one of the
  registry's models (named so, or carrying the registry's checked weights) the registry entry is used, after
  checking that the snapshot's own files agree with it on every fact of the graph; otherwise the derived spec
  is the model, under the name given (or one taken from the folder).

Framework-free: the orchestrator resolves while planning.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from embedperf.models.registry import DEFAULT_MODEL, MODELS, ModelSpec, UnknownModel, get_model, remember
from embedperf.models.snapshot import SnapshotError, derive

# what must agree between a snapshot and the registry entry it is taken for
GRAPH_FACTS = ("family", "pooling", "dense", "normalize", "output_dim")
HUB_SPEC_FILES = ["*.json", "*/*.json", "*.txt", "*.model"]  # configs and tokenizer: enough to derive


def registry_entry(name: str | None) -> ModelSpec | None:
    """The registry's model of that name (hub id or slug), or None."""
    if not name:
        return None
    try:
        spec = get_model(name)
    except UnknownModel:
        return None
    return spec if spec.bundled else None


def _sha256(path: Path) -> str:
    from embedperf.models.sources import sha256_file

    return sha256_file(path)


def recognised(folder: Path) -> ModelSpec | None:
    """The registry model whose checked weights this folder holds (same sha256 as its package's), or None."""
    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    digest = _sha256(path)
    return next((spec for spec in MODELS.values() if spec.package_sha256 == digest), None)


def folder_name(folder: Path) -> str:
    """A name for a local snapshot: org/name from a hub cache path (models--org--name/snapshots/REV), else the
    folder's name (prefixed `local/` where it would shadow a registry model)."""
    parts = folder.parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/", 1)
    name = folder.name
    return f"local/{name}" if registry_entry(name) else name


def disagreements(derived: ModelSpec, registered: ModelSpec) -> list[str]:
    """The graph facts on which a snapshot's files and the registry differ."""
    out = []
    for fact in GRAPH_FACTS:
        mine, theirs = getattr(derived, fact), getattr(registered, fact)
        if mine != theirs:
            out.append(f"{fact} {mine!r} in the snapshot, {theirs!r} in the registry")
    return out


def hub_files(name: str, revision: str | None) -> Path:
    """The hub snapshot's configs and tokenizer (not yet its weights: `sources.locate` fetches those)."""
    from embedperf.models.sources import SourceError, hub_snapshot

    try:
        return hub_snapshot(name, revision, HUB_SPEC_FILES)
    except SourceError as e:
        raise SnapshotError(str(e)) from None


@lru_cache(maxsize=64)
def _resolve(name: str | None, source: str, path: str | None, revision: str | None) -> ModelSpec:
    if source in ("twin", "tiny", "package"):
        spec = registry_entry(name or DEFAULT_MODEL)
        if spec is None:
            raise SnapshotError(f"{name!r} is not one of the models embedperf bundles, so --source {source} cannot "
                                "provide it; use --source hub, or --source local --path DIR")
        return spec
    if source == "local":
        if not path:
            raise SnapshotError("--source local needs --path to a snapshot folder")
        folder = Path(path).expanduser().resolve()
        derived = derive(folder, name or "?")
        registered = registry_entry(name) if name else recognised(folder)
        if registered is None:
            return remember(derived if name else _renamed(derived, folder_name(folder)))
    elif source == "hub":
        if not name:
            raise SnapshotError("--source hub needs --model, the model's hub id")
        folder = hub_files(name, revision)
        derived = derive(folder, name, need_weights=False)
        registered = registry_entry(name)
        if registered is None:
            return remember(derived)
    else:
        raise SnapshotError(f"unknown source {source!r}")
    differ = disagreements(derived, registered)
    if differ:
        raise SnapshotError(f"{folder} does not hold {registered.name} as embedperf knows it ({'; '.join(differ)}); "
                            "to run it as a model of its own, give it another --model name")
    return registered


def _renamed(spec: ModelSpec, name: str) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, name=name)


def resolve(name: str | None, source: str, path: str | None = None, revision: str | None = None) -> ModelSpec:
    """The spec a model choice means (raises SnapshotError, one line, when it cannot be run).

    A spec read from a snapshot is also remembered by name, so `registry.get_model(spec.name)` finds it in this
    process afterwards.
    """
    spec = _resolve(name, source, str(Path(path).expanduser().resolve()) if path else None, revision)
    if not spec.bundled:
        remember(spec)
    return spec


def resolve_choice(choice) -> ModelSpec:
    """The spec of a spec.ModelChoice (anything with name, source, path and revision)."""
    return resolve(choice.name, choice.source, choice.path, choice.revision)
