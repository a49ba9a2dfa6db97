"""Which precision an ONNX Runtime runner may claim, decided from the request and the graph file.

A label is a promise: an int8 cell must run a quantized graph, an fp16 cell a float16
one, an fp32 cell neither. The graph file is the evidence, so it is read, not trusted:
`graph_facts` walks the ONNX protobuf (ModelProto.graph, its nodes' op_type, its
initializers' data_type, subgraphs in node attributes, model-local functions) over a
memory map and skips every weight's bytes. onnx.load would copy every weight into the
runner and inflate its peak memory before the session even loads. The Rust and C++ ONNX
Runtime runners walk the file the same way and apply the same rules (`decide`), so the
three bindings accept and refuse the same cells with the same counts.
"""

from __future__ import annotations

import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from embedperf.runners.refusal import Unsupported

# Operators that only a quantized graph holds (ONNX and com.microsoft), plus every QLinear* op.
QUANTIZED_OPS = frozenset({
    "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm", "QEmbedLayerNormalization",
    "DynamicQuantizeLSTM",
})
QUANTIZED_PREFIX = "QLinear"

# TensorProto.DataType values an embedding graph's initializers take.
DATA_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}

# Field numbers of onnx.proto3 the walk follows.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS = 6, 11
_TENSOR_DATA_TYPE = 2
_FUNCTION_NODE = 7


@dataclass
class GraphFacts:
    """What a model file holds: how many nodes of each op type, initializers of each element type."""

    op_types: Counter = field(default_factory=Counter)
    initializer_types: Counter = field(default_factory=Counter)

    @property
    def quantized_op_types(self) -> dict[str, int]:
        return {op: n for op, n in sorted(self.op_types.items())
                if op in QUANTIZED_OPS or op.startswith(QUANTIZED_PREFIX)}

    @property
    def quantized_ops(self) -> int:
        return sum(self.quantized_op_types.values())

    def evidence(self) -> dict:
        """The counts a result's settings record as the precision's evidence."""
        return {"quantized_ops": self.quantized_ops, "quantized_op_types": self.quantized_op_types,
                "initializer_types": dict(sorted(self.initializer_types.items()))}


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed protobuf varint")


def _fields(buf, start: int, end: int):
    """(field number, varint value or None, (start, end) of a length-delimited payload or None)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value, None
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("malformed protobuf: a field runs past its message")
            yield number, None, (pos, pos + length)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _node(buf, span, facts: GraphFacts) -> None:
    for number, _, sub in _fields(buf, *span):
        if number == _NODE_OP_TYPE and sub:
            facts.op_types[bytes(buf[sub[0]:sub[1]]).decode()] += 1
        elif number == _NODE_ATTRIBUTE and sub:
            for inner, _, graph in _fields(buf, *sub):
                if inner in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS) and graph:
                    _graph(buf, graph, facts)


def _graph(buf, span, facts: GraphFacts) -> None:
    for number, _, sub in _fields(buf, *span):
        if number == _GRAPH_NODE and sub:
            _node(buf, sub, facts)
        elif number == _GRAPH_INITIALIZER and sub:
            for inner, value, _ in _fields(buf, *sub):
                if inner == _TENSOR_DATA_TYPE and value is not None:
                    facts.initializer_types[DATA_TYPES.get(value, f"type{value}")] += 1


def graph_facts(path: str | Path) -> GraphFacts:
    """Op types and initializer element types of an ONNX model file (weights are skipped, never read)."""
    facts = GraphFacts()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for number, _, sub in _fields(buf, 0, len(buf)):
            if number == _MODEL_GRAPH and sub:
                _graph(buf, sub, facts)
            elif number == _MODEL_FUNCTIONS and sub:
                for inner, _, node in _fields(buf, *sub):
                    if inner == _FUNCTION_NODE and node:
                        _node(buf, node, facts)
    return facts


def decide(requested: str, artifact_precision: str, cuda: bool, facts: GraphFacts) -> None:
    """Raise Unsupported (a refusal: the cell is skipped) or ValueError (a mislabelled artifact)
    unless the graph runs at `requested` natively on this device; return quietly when it does."""
    if requested in ("fp16", "bf16") and not cuda:
        raise Unsupported("ONNX Runtime's CPU execution provider has no fp16/bf16 kernels for this graph")
    if requested == "bf16":
        raise Unsupported("no bf16 ONNX graph is exported (the onnx artifacts are fp32 and int8)")
    if requested == "fp16":
        if artifact_precision != "fp16":
            raise Unsupported(f"fp16 on CUDA needs an fp16 graph; the request's artifact is {artifact_precision}")
        if not facts.initializer_types.get("float16"):
            raise Unsupported("the artifact is labelled fp16 but holds no float16 initializers")
        return
    if requested == "int8":
        if cuda:
            raise Unsupported("a dynamically quantized graph runs on ONNX Runtime's CPU execution provider only "
                              "(no CUDA kernel for DynamicQuantizeLinear)")
        if artifact_precision != "int8":
            raise Unsupported(f"int8 needs the int8 artifact (onnx/model.int8.onnx); the request's artifact is "
                              f"{artifact_precision}")
        if not facts.quantized_ops:
            raise Unsupported("the artifact is labelled int8 but its graph has no quantized operators")
        return
    if artifact_precision != "fp32":
        raise ValueError(f"precision fp32 asked, but the request's artifact is {artifact_precision}")
    if facts.quantized_ops or facts.initializer_types.get("float16") or facts.initializer_types.get("bfloat16"):
        raise ValueError(f"the artifact is labelled fp32 but holds {facts.evidence()}")


def check(request: dict, model_path: str | Path) -> dict:
    """Read the graph, apply `decide`, return the settings that say what runs and why."""
    requested = request["precision"]
    artifact_precision = request["artifact"].get("precision") or "fp32"
    facts = graph_facts(model_path)
    decide(requested, artifact_precision, request["device"].startswith("cuda"), facts)
    return {"precision": requested,
            "precision_evidence": {"artifact_precision": artifact_precision,
                                   "source": "op types and initializer types read from the model file",
                                   **facts.evidence()}}
