//! Which precision the runner may claim, decided from the request and the graph file.
//!
//! The same rules and the same walk as the Python runner's
//! `src/embedperf/runners/ort_precision.py`: the ONNX protobuf is read over a
//! memory map (ModelProto.graph, its nodes' `op_type`, its initializers'
//! `data_type`, subgraphs in node attributes, model-local functions) and every
//! weight's bytes are skipped, never read, so checking the file costs no
//! resident memory. An int8 label needs quantized operators in the graph, an
//! fp16 label float16 initializers, an fp32 label neither.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use embedperf_protocol::Unsupported;
use serde_json::{json, Value};

/// Operators only a quantized graph holds (ONNX and com.microsoft), plus every `QLinear*` op.
const QUANTIZED_OPS: &[&str] = &[
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QAttention",
    "QGemm",
    "QEmbedLayerNormalization",
    "DynamicQuantizeLSTM",
];
const QUANTIZED_PREFIX: &str = "QLinear";

// Field numbers of onnx.proto3 the walk follows.
const MODEL_GRAPH: u64 = 7;
const MODEL_FUNCTIONS: u64 = 25;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const NODE_OP_TYPE: u64 = 4;
const NODE_ATTRIBUTE: u64 = 5;
const ATTRIBUTE_GRAPH: u64 = 6;
const ATTRIBUTE_GRAPHS: u64 = 11;
const TENSOR_DATA_TYPE: u64 = 2;
const FUNCTION_NODE: u64 = 7;

/// `TensorProto.DataType` names, as the Python runner writes them.
fn data_type(t: u64) -> String {
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        other => return format!("type{other}"),
    }
    .to_string()
}

pub fn is_quantized_op(op: &str) -> bool {
    QUANTIZED_OPS.contains(&op) || op.starts_with(QUANTIZED_PREFIX)
}

/// What a model file holds: nodes per op type, initializers per element type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GraphFacts {
    pub op_types: BTreeMap<String, usize>,
    pub initializer_types: BTreeMap<String, usize>,
}

impl GraphFacts {
    pub fn quantized_op_types(&self) -> BTreeMap<String, usize> {
        self.op_types.iter().filter(|(op, _)| is_quantized_op(op)).map(|(op, n)| (op.clone(), *n)).collect()
    }

    pub fn quantized_ops(&self) -> usize {
        self.quantized_op_types().values().sum()
    }

    fn initializers(&self, dtype: &str) -> usize {
        self.initializer_types.get(dtype).copied().unwrap_or(0)
    }

    /// The counts a result's settings record as the precision's evidence.
    pub fn evidence(&self) -> Value {
        json!({
            "quantized_ops": self.quantized_ops(),
            "quantized_op_types": self.quantized_op_types(),
            "initializer_types": self.initializer_types,
        })
    }
}

/// One protobuf field: a varint value or a length-delimited payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| anyhow!("malformed protobuf: truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    bail!("malformed protobuf varint")
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u64, Field<'a>)> {
        let buf: &'a [u8] = self.buf;
        let key = varint(buf, &mut self.pos)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(buf, &mut self.pos)?),
            1 => {
                self.pos += 8;
                ensure!(self.pos <= buf.len(), "malformed protobuf: truncated fixed64");
                Field::Other
            }
            2 => {
                let len = varint(buf, &mut self.pos)? as usize;
                let end = self.pos.checked_add(len).filter(|&e| e <= buf.len());
                let end = end.ok_or_else(|| anyhow!("malformed protobuf: a field runs past its message"))?;
                let bytes = &buf[self.pos..end];
                self.pos = end;
                Field::Bytes(bytes)
            }
            5 => {
                self.pos += 4;
                ensure!(self.pos <= buf.len(), "malformed protobuf: truncated fixed32");
                Field::Other
            }
            wire => bail!("unsupported protobuf wire type {wire}"),
        };
        Ok((key >> 3, field))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            self.pos = self.buf.len(); // stop after an error
        }
        Some(r)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

fn walk_node(buf: &[u8], facts: &mut GraphFacts) -> Result<()> {
    for f in fields(buf) {
        match f? {
            (NODE_OP_TYPE, Field::Bytes(b)) => {
                *facts.op_types.entry(String::from_utf8_lossy(b).into_owned()).or_default() += 1;
            }
            (NODE_ATTRIBUTE, Field::Bytes(attr)) => {
                for g in fields(attr) {
                    if let (ATTRIBUTE_GRAPH | ATTRIBUTE_GRAPHS, Field::Bytes(graph)) = g? {
                        walk_graph(graph, facts)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn walk_graph(buf: &[u8], facts: &mut GraphFacts) -> Result<()> {
    for f in fields(buf) {
        match f? {
            (GRAPH_NODE, Field::Bytes(node)) => walk_node(node, facts)?,
            (GRAPH_INITIALIZER, Field::Bytes(tensor)) => {
                for t in fields(tensor) {
                    if let (TENSOR_DATA_TYPE, Field::Varint(v)) = t? {
                        *facts.initializer_types.entry(data_type(v)).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Op types and initializer element types of a serialized ModelProto.
pub fn facts_of(model: &[u8]) -> Result<GraphFacts> {
    let mut facts = GraphFacts::default();
    for f in fields(model) {
        match f? {
            (MODEL_GRAPH, Field::Bytes(graph)) => walk_graph(graph, &mut facts)?,
            (MODEL_FUNCTIONS, Field::Bytes(function)) => {
                for g in fields(function) {
                    if let (FUNCTION_NODE, Field::Bytes(node)) = g? {
                        walk_node(node, &mut facts)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(facts)
}

/// Op types and initializer element types of an ONNX model file (weights are mapped, not read).
pub fn graph_facts(path: &Path) -> Result<GraphFacts> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the file is mapped read-only for this walk only; a concurrent
    // writer would at worst give a parse error, which is reported.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
    facts_of(&map).with_context(|| format!("reading the graph of {}", path.display()))
}

/// `Ok` when the graph runs at `requested` natively on this device; an
/// [`Unsupported`] refusal (the cell is skipped) or a plain error (a
/// mislabelled artifact) otherwise. Same rules as the Python runner's `decide`.
pub fn decide(requested: &str, artifact_precision: &str, cuda: bool, facts: &GraphFacts) -> Result<()> {
    let refuse = |why: String| -> Result<()> { Err(Unsupported::new(why).into()) };
    match requested {
        "fp16" | "bf16" if !cuda => {
            refuse("ONNX Runtime's CPU execution provider has no fp16/bf16 kernels for this graph".into())
        }
        "bf16" => refuse("no bf16 ONNX graph is exported (the onnx artifacts are fp32 and int8)".into()),
        "fp16" if artifact_precision != "fp16" => {
            refuse(format!("fp16 on CUDA needs an fp16 graph; the request's artifact is {artifact_precision}"))
        }
        "fp16" if facts.initializers("float16") == 0 => {
            refuse("the artifact is labelled fp16 but holds no float16 initializers".into())
        }
        "fp16" => Ok(()),
        "int8" if cuda => refuse(
            "a dynamically quantized graph runs on ONNX Runtime's CPU execution provider only \
             (no CUDA kernel for DynamicQuantizeLinear)"
                .into(),
        ),
        "int8" if artifact_precision != "int8" => refuse(format!(
            "int8 needs the int8 artifact (onnx/model.int8.onnx); the request's artifact is {artifact_precision}"
        )),
        "int8" if facts.quantized_ops() == 0 => {
            refuse("the artifact is labelled int8 but its graph has no quantized operators".into())
        }
        "int8" => Ok(()),
        "fp32" if artifact_precision != "fp32" => {
            bail!("precision fp32 asked, but the request's artifact is {artifact_precision}")
        }
        "fp32" if facts.quantized_ops() > 0 || facts.initializers("float16") > 0 || facts.initializers("bfloat16") > 0 => {
            bail!("the artifact is labelled fp32 but holds {}", facts.evidence())
        }
        "fp32" => Ok(()),
        other => bail!("unknown precision {other:?} (fp32, fp16, bf16, int8)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf encoding helpers: just enough to build a ModelProto by hand.
    fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
        varint_out(field << 3 | wire, out);
    }
    fn varint_out(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(field: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key(field, 2, &mut out);
        varint_out(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }
    fn node(op: &str, subgraph: Option<&[u8]>) -> Vec<u8> {
        let mut n = bytes(1, b"x"); // input
        n.extend(bytes(NODE_OP_TYPE, op.as_bytes()));
        if let Some(g) = subgraph {
            let mut attr = bytes(1, b"then_branch");
            attr.extend(bytes(ATTRIBUTE_GRAPH, g));
            n.extend(bytes(NODE_ATTRIBUTE, &attr));
        }
        n
    }
    fn initializer(dtype: u64, raw: usize) -> Vec<u8> {
        let mut t = Vec::new();
        key(1, 0, &mut t); // dims
        varint_out(raw as u64, &mut t);
        key(TENSOR_DATA_TYPE, 0, &mut t);
        varint_out(dtype, &mut t);
        t.extend(bytes(9, &vec![0xAB; raw])); // raw_data, skipped
        t
    }

    #[test]
    fn counts_ops_initializers_and_subgraphs() {
        let sub = bytes(GRAPH_NODE, &node("MatMulInteger", None));
        let mut graph = Vec::new();
        for op in ["DynamicQuantizeLinear", "MatMulInteger", "Add", "QLinearMatMul"] {
            graph.extend(bytes(GRAPH_NODE, &node(op, None)));
        }
        graph.extend(bytes(GRAPH_NODE, &node("If", Some(&sub))));
        graph.extend(bytes(GRAPH_INITIALIZER, &initializer(3, 300)));
        graph.extend(bytes(GRAPH_INITIALIZER, &initializer(1, 7)));
        graph.extend(bytes(GRAPH_INITIALIZER, &initializer(1, 0)));
        let mut model = Vec::new();
        key(1, 0, &mut model); // ir_version
        varint_out(8, &mut model);
        model.extend(bytes(MODEL_GRAPH, &graph));
        model.extend(bytes(MODEL_FUNCTIONS, &bytes(FUNCTION_NODE, &node("DequantizeLinear", None))));
        let f = facts_of(&model).unwrap();
        assert_eq!(f.op_types["MatMulInteger"], 2);
        assert_eq!(f.op_types["Add"], 1);
        assert_eq!(f.quantized_ops(), 5); // 2 MatMulInteger, DynamicQuantizeLinear, QLinearMatMul, DequantizeLinear
        assert_eq!(f.initializer_types, BTreeMap::from([("float32".into(), 2), ("int8".into(), 1)]));
        // a field running past its message is an error, not a silent zero
        assert!(facts_of(&model[..model.len() - 3]).is_err());
    }

    #[test]
    fn rules_refuse_or_accept() {
        let mut q = GraphFacts::default();
        q.op_types.insert("MatMulInteger".into(), 3);
        let f32_graph = GraphFacts::default();
        let unsupported = |r: Result<()>| r.unwrap_err().downcast_ref::<Unsupported>().map(|u| u.0.clone());
        assert!(unsupported(decide("fp16", "fp32", false, &f32_graph)).unwrap().contains("CPU execution provider"));
        assert!(unsupported(decide("bf16", "fp32", false, &f32_graph)).is_some());
        assert!(unsupported(decide("bf16", "fp32", true, &f32_graph)).is_some());
        assert!(unsupported(decide("fp16", "fp32", true, &f32_graph)).unwrap().contains("fp16 graph"));
        assert!(unsupported(decide("int8", "fp32", false, &f32_graph)).unwrap().contains("int8 artifact"));
        assert!(unsupported(decide("int8", "int8", false, &f32_graph)).unwrap().contains("no quantized"));
        assert!(unsupported(decide("int8", "int8", true, &q)).is_some());
        decide("int8", "int8", false, &q).unwrap();
        decide("fp32", "fp32", false, &f32_graph).unwrap();
        // mislabelled: a plain (load) error, not a refusal
        let e = decide("fp32", "fp32", false, &q).unwrap_err();
        assert!(e.downcast_ref::<Unsupported>().is_none() && e.to_string().contains("labelled fp32"));
        assert!(decide("fp32", "int8", false, &q).unwrap_err().downcast_ref::<Unsupported>().is_none());
    }
}
