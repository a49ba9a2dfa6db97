"""The whole embedding graph in PyTorch: encoder, pooling, Dense layers, L2 normalize.

This is what every runtime runs (exported to ONNX/OpenVINO, or re-implemented in
Candle), so it is written once here. Imports torch: only prepare and runner
subprocesses import it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_INFO = "embedperf_model.json"
HEADS_FILE = "heads.safetensors"
# The graph's output of each output (docs/outputs.md): the sentence embedding [B,D], BGE-M3's per-token
# sparse weights [B,S] and its multi-vectors [B,S-1,Dc] (every token after CLS).
OUTPUT_NAMES = {"dense": "sentence_embedding", "sparse": "token_weights", "colbert": "colbert_vectors"}
# heads.safetensors names of the token heads (FlagEmbedding's module names)
TOKEN_HEAD_NAMES = {"sparse": "sparse_linear", "colbert": "colbert_linear"}


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states [B,S,H] to [B,H] the way sentence-transformers' Pooling does (right-padded inputs).

    `how` is one mode of registry.POOLING_MODES, or several joined by "+" (concatenated in that order).
    """
    if "+" in how:
        return torch.cat([pool(hidden, mask, one) for one in how.split("+")], dim=-1)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        # Index of the last real token taken from the mask (never by searching for a
        # pad id: Qwen3's last real token is an EOS that equals the pad id).
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        last = (positions * mask).amax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    keep = mask.unsqueeze(-1).bool()
    if how == "max":
        lowest = torch.full((), float("-inf"), dtype=hidden.dtype, device=hidden.device)
        return torch.where(keep, hidden, lowest).amax(dim=1)
    # A select, not a multiply: a padded position can hold NaN on some kernels and NaN * 0 would poison the sum.
    zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
    if how in ("mean", "mean_sqrt_len_tokens"):
        summed = torch.where(keep, hidden, zero).sum(dim=1)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
        return summed / (count if how == "mean" else count.sqrt())
    if how == "weightedmean":
        # weights 1, 2, ... from the first real token (sentence-transformers counts from there under left padding)
        first = mask.argmax(dim=1, keepdim=True)
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device).unsqueeze(0) - first
        weights = (positions * mask).to(hidden.dtype).unsqueeze(-1)
        summed = torch.where(keep, hidden * weights, zero).sum(dim=1)
        return summed / weights.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling {how!r}")


ACTIVATIONS = {"identity": nn.Identity, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
               "silu": nn.SiLU}


class Dense(nn.Module):
    """sentence-transformers' Dense: activation(x W^T + b)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "identity"):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        self.linear.weight.data.copy_(weight)
        if bias is not None:
            self.linear.bias.data.copy_(bias)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


def _layer(head) -> dict:
    """A dense layer as materialize gives it (a dict), or a bare weight (bias-free, identity)."""
    return head if isinstance(head, dict) else {"weight": head, "bias": None, "activation": "identity"}


class TokenHeads(nn.Module):
    """BGE-M3's heads on the last hidden states, as FlagEmbedding's M3 model computes them at inference.

    sparse: relu(hidden W_s^T + b_s) per token, [B,S] (every position; the lexical weights are aggregated from it
    on the host, runners/outputs.py); colbert: (hidden[:, 1:] W_c^T + b_c) at the real tokens after CLS, zero at
    padding, each vector L2-normalized when the model normalizes, [B,S-1,Dc].
    """

    def __init__(self, sparse: dict | None = None, colbert: dict | None = None, normalize: bool = True):
        super().__init__()
        self.sparse_linear = _linear(sparse) if sparse else None
        self.colbert_linear = _linear(colbert) if colbert else None
        self.normalize = normalize

    def sparse(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.sparse_linear(hidden)).squeeze(-1)

    def colbert(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = self.colbert_linear(hidden[:, 1:])
        # a select, not a multiply (pool's reason): padding becomes exactly 0, and normalize keeps 0 at 0
        keep = mask[:, 1:].unsqueeze(-1).bool()
        vectors = torch.where(keep, vectors, torch.zeros((), dtype=vectors.dtype, device=vectors.device))
        return nn.functional.normalize(vectors, p=2.0, dim=-1) if self.normalize else vectors


def _linear(layer: dict) -> nn.Linear:
    """nn.Linear from {weight [out,in], bias [out] or None}."""
    out = nn.Linear(layer["weight"].shape[1], layer["weight"].shape[0], bias=layer.get("bias") is not None)
    out.weight.data.copy_(layer["weight"])
    if layer.get("bias") is not None:
        out.bias.data.copy_(layer["bias"])
    return out


class EmbeddingModel(nn.Module):
    """Encoder + pooling + Dense layers + L2 normalize: input ids in, sentence embedding out.

    With `outputs` beyond ("dense",) (BGE-M3's token heads) one forward pass also returns the sparse token
    weights and/or the multi-vectors: a tuple in the order dense, sparse, colbert (OUTPUT_NAMES).
    """

    def __init__(self, encoder: nn.Module, pooling: str, dense: list, normalize: bool = True,
                 token_heads: dict | None = None, outputs: tuple[str, ...] = ("dense",)):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dense = nn.ModuleList()
        for head in dense:
            layer = _layer(head)
            self.dense.append(Dense(layer["weight"], layer.get("bias"), layer.get("activation") or "identity"))
        self.normalize = normalize
        self.outputs = tuple(o for o in OUTPUT_NAMES if o in outputs)
        wanted = [o for o in self.outputs if o != "dense"]
        missing = [o for o in wanted if not (token_heads or {}).get(o)]
        if missing:
            raise ValueError(f"outputs {', '.join(missing)} asked, but the model has no such head")
        # only the heads that run: a mode's graph holds no weight it does not use
        self.heads = TokenHeads(*((token_heads or {}).get(o) if o in wanted else None for o in ("sparse", "colbert")),
                                normalize=normalize) if wanted else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **unused):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        x = pool(hidden, attention_mask, self.pooling)
        for layer in self.dense:
            x = layer(x)
        if self.normalize:
            x = nn.functional.normalize(x, p=2.0, dim=-1)
        if self.heads is None:
            return x
        out = [x]
        if "sparse" in self.outputs:
            out.append(self.heads.sparse(hidden))
        if "colbert" in self.outputs:
            out.append(self.heads.colbert(hidden, attention_mask))
        return tuple(out)


# The transformers class that holds exactly one tower of a multimodal checkpoint (weights and head),
# loadable from the full model's folder: a tower cell loads and runs only its own tower.
TOWER_CLASSES = {
    ("clip", "text"): "CLIPTextModelWithProjection",
    ("clip", "image"): "CLIPVisionModelWithProjection",
    ("siglip", "text"): "SiglipTextModel",
    ("siglip", "image"): "SiglipVisionModel",
}


class TowerModel(nn.Module):
    """One tower of CLIP or SigLIP with its own pooling and projection/head, then L2 normalize.

    clip text: first EOS → text_projection; clip image: CLS → post-LN → visual_projection;
    siglip text: last position → head, *no attention mask*; siglip image: MAP head.
    """

    def __init__(self, tower: nn.Module, family: str, modality: str, normalize: bool = True):
        super().__init__()
        self.tower, self.family, self.modality, self.normalize = tower, family, modality, normalize

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, **unused) -> torch.Tensor:
        if self.modality == "image":
            out = self.tower(pixel_values=pixel_values)
            x = out.image_embeds if self.family == "clip" else out.pooler_output
        elif self.family == "clip":
            x = self.tower(input_ids=input_ids, attention_mask=attention_mask).text_embeds
        else:
            # SigLIP was trained on text padded to 64 without a mask: passing one changes the result
            x = self.tower(input_ids=input_ids).pooler_output
        if self.normalize:
            x = nn.functional.normalize(x, p=2.0, dim=-1)
        return x


def load_tower(folder: Path, family: str, modality: str, attention: str = "sdpa", normalize: bool = True,
               device: str = "cpu") -> TowerModel:
    """Load one tower from a full CLIP/SigLIP folder (the other tower's weights are not loaded)."""
    import transformers
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, TOWER_CLASSES[(family, modality)])
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the other tower's weights are "unexpected" on purpose
    hf_logging.disable_progress_bar()
    try:
        tower = cls.from_pretrained(folder, attn_implementation=attention, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    return TowerModel(tower, family, modality, normalize).eval().to(device)


def save_reference(encoder: nn.Module, dense: list, info: dict, folder: Path, token_heads: dict | None = None) -> None:
    """Write the reference artifact: transformers' own save plus heads and facts.

    heads.safetensors holds `dense.{i}.weight` (and `dense.{i}.bias` where a layer has one), and BGE-M3's token
    heads as `sparse_linear.weight/bias`, `colbert_linear.weight/bias`; info["dense_layers"] says each dense
    layer's tensors and activation, info["token_heads"] each token head's tensors.
    """
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(folder, safe_serialization=True)
    tensors, layers = {}, []
    for i, head in enumerate(_layer(h) for h in dense):
        tensors[f"dense.{i}.weight"] = head["weight"].contiguous()
        if head.get("bias") is not None:
            tensors[f"dense.{i}.bias"] = head["bias"].contiguous()
        layers.append({"weight": f"dense.{i}.weight", "bias": f"dense.{i}.bias" if head.get("bias") is not None
                       else None, "activation": head.get("activation") or "identity"})
    named = {}
    for output, layer in (token_heads or {}).items():
        name = TOKEN_HEAD_NAMES[output]
        tensors[f"{name}.weight"] = layer["weight"].contiguous()
        if layer.get("bias") is not None:
            tensors[f"{name}.bias"] = layer["bias"].contiguous()
        named[output] = {"weight": f"{name}.weight", "bias": f"{name}.bias" if layer.get("bias") is not None
                         else None}
    save_file(tensors, str(folder / HEADS_FILE))
    facts = {**info, "dense_layers": layers}
    if named:
        facts["token_heads"] = named
    (folder / MODEL_INFO).write_text(json.dumps(facts, indent=2) + "\n")


def load_reference(folder: Path, attention: str = "sdpa", device: str = "cpu",
                   modality: str = "text", outputs: tuple[str, ...] = ("dense",)) -> nn.Module:
    """Load a reference artifact written by save_reference, in fp32 (one tower of a multimodal model), returning
    `outputs` (EmbeddingModel)."""
    from transformers import AutoModel

    info = json.loads((folder / MODEL_INFO).read_text())
    if info.get("pooling") == "tower":
        return load_tower(folder, info["family"], modality, attention, info.get("normalize", True), device)
    encoder = AutoModel.from_pretrained(folder, attn_implementation=attention, dtype=torch.float32)
    heads = load_file(str(folder / HEADS_FILE)) if (folder / HEADS_FILE).exists() else {}
    # artifacts written before Dense bias and activation name only their (bias-free, identity) weights
    layers = info.get("dense_layers") or [{"weight": name, "bias": None, "activation": "identity"}
                                          for name in info.get("dense", [])]
    dense = [{"weight": heads[layer["weight"]], "bias": heads[layer["bias"]] if layer.get("bias") else None,
              "activation": layer.get("activation") or "identity"} for layer in layers]
    token_heads = {output: {"weight": heads[names["weight"]], "bias": heads[names["bias"]] if names.get("bias")
                            else None} for output, names in (info.get("token_heads") or {}).items()}
    model = EmbeddingModel(encoder, info["pooling"], dense, info.get("normalize", True), token_heads, outputs)
    return model.eval().to(device)
