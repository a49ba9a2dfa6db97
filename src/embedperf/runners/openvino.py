"""OpenVINO runner: an IR compiled for the CPU with explicit precision and threads.

fp32/fp16/bf16 set INFERENCE_PRECISION_HINT on the fp32 IR, read it back after compiling and count
the precisions the compiled graph's matmuls really execute in; a mismatch with the request is a
refusal (runners/refusal.py), never a relabel. int8 reads a quantized IR (prepare's NNCF artifacts:
static int8 with FakeQuantize, or int8 weight compression) with an f32 hint for everything else.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import openvino as ov

from embedperf.precision import int8_kernel
from embedperf.runners.harness import INPUT_NAMES, main, missing_input
from embedperf.runners.outputs import GRAPH_OUTPUTS
from embedperf.runners.refusal import Unsupported

HINT = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
HINT_TYPE = {"fp32": ov.Type.f32, "fp16": ov.Type.f16, "bf16": ov.Type.bf16, "int8": ov.Type.f32}
# what a matmul of each request must execute in, as the compiled graph's runtimePrecision names it
EXECUTES = {"fp32": {"f32"}, "fp16": {"f16"}, "bf16": {"bf16"}, "int8": {"u8", "i8"}}
MATMULS = ("FullyConnected", "MatMul", "Convolution")


def _input_name(port) -> str:
    """A compiled input's name: the protocol name among its tensor names, else any of them."""
    names = port.get_names()
    return next((n for n in INPUT_NAMES if n in names), None) or port.get_any_name()


def quantization_of(model: ov.Model) -> dict | None:
    """How an IR is quantized: static (FakeQuantize), int8 weights only (i8/u8 constants), or None (float)."""
    ops = Counter(op.get_type_name() for op in model.get_ops())
    if ops["FakeQuantize"]:
        return {"scheme": "static int8 (NNCF: weights and activations, FakeQuantize)",
                "fake_quantize": ops["FakeQuantize"]}
    int8_weights = sum(op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.i8, ov.Type.u8)
                       and len(op.get_shape()) >= 2 for op in model.get_ops())
    if int8_weights:
        return {"scheme": "int8 weight compression (NNCF: int8 weights; activations stay float unless the CPU plugin quantizes them per call)",
                "int8_weight_constants": int8_weights}
    return None


def executed_precisions(compiled: ov.CompiledModel) -> dict[str, int]:
    """Counts of runtime precisions of the compiled graph's matmul layers (FullyConnected, MatMul, Convolution)."""
    seen: Counter = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in MATMULS:
            seen[info["runtimePrecision"].astype(str)] += 1
    return dict(seen)


class OpenVinoEngine:
    def __init__(self, request: dict):
        self.requested = request["device"]
        if self.requested != "cpu":
            raise Unsupported(f"the openvino runner runs on cpu only; {self.requested} was requested")
        precision = request["precision"]
        if precision not in HINT:
            raise Unsupported(f"the openvino runner knows no precision {precision!r}")
        core = ov.Core()
        model = core.read_model(request["artifact"]["path"])
        quantized = quantization_of(model)
        if (precision == "int8") != (quantized is not None):
            # the orchestrator handed the wrong artifact: a load failure, not a property of OpenVINO
            raise ValueError(f"precision {precision} but the IR {request['artifact']['path']} is "
                             f"{'quantized: ' + quantized['scheme'] if quantized else 'not quantized'}")
        # Set precision explicitly: on bf16-capable CPUs OpenVINO's default inference
        # precision is bf16, which would silently change the numbers.
        self.config = {
            "INFERENCE_PRECISION_HINT": HINT[precision],
            "INFERENCE_NUM_THREADS": request["threads"]["intra_op"],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self.compiled = core.compile_model(model, "CPU", self.config)
        self.applied = {k: str(self.compiled.get_property(k)) for k in self.config}
        self.evidence = self._check(precision, quantized)
        self.precision = precision
        self.request = self.compiled.create_infer_request()
        asked = request["model"].get("outputs") or ["dense"]
        self.several = len(asked) > 1
        if self.several:
            declared = sorted(name for port in self.compiled.outputs for name in port.get_names())
            missing = [GRAPH_OUTPUTS[o] for o in asked if GRAPH_OUTPUTS[o] not in declared]
            if missing or len(self.compiled.outputs) != len(asked):
                raise ValueError(f"the IR's outputs are {declared}, the request asks for "
                                 f"{[GRAPH_OUTPUTS[o] for o in asked]}")
            self.ports = {GRAPH_OUTPUTS[o]: self.compiled.output(GRAPH_OUTPUTS[o]) for o in asked}
        self.output = self.compiled.output(0)
        self.inputs = [_input_name(port) for port in self.compiled.inputs]  # feed exactly what the graph declares

    def _check(self, precision: str, quantized: dict | None) -> dict:
        """Read back what OpenVINO applied; refuse when it is not what was asked."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        executed = executed_precisions(self.compiled)
        evidence = {"inference_precision_hint": hint.get_type_name(), "matmul_runtime_precisions": executed}
        if hint != HINT_TYPE[precision]:
            raise Unsupported(f"openvino {precision}: asked INFERENCE_PRECISION_HINT {HINT[precision]}, the CPU plugin "
                              f"applied {hint.get_type_name()} (no native {precision} on this CPU)")
        # weights-only int8: the int8 constants are the evidence; the CPU plugin decompresses them for f32
        # matmuls, or quantizes activations on the fly (u8) where it has int8 kernels: either is honest
        wanted = EXECUTES[precision] | ({"f32"} if quantized and "weight" in quantized["scheme"] else set())
        # a graph without matmuls (a test graph) has only the read-back hint to show, except for int8
        if (executed or precision == "int8") and not any(p in wanted for p in executed):
            raise Unsupported(f"openvino {precision}: none of the compiled graph's matmuls executes in "
                              f"{'/'.join(sorted(wanted))} (runtime precisions {executed})")
        if quantized:
            evidence["quantization"] = quantized
            evidence["kernels"] = int8_kernel()
        return evidence

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        try:
            feed = {name: inputs[name] for name in self.inputs}
        except KeyError as e:
            raise missing_input(e.args[0], inputs) from None
        result = self.request.infer(feed)
        if self.several:  # the request's buffers are reused by the next call: copy each output out
            return {name: np.array(result[port], copy=True) for name, port in self.ports.items()}
        return np.array(result[self.output], copy=True)

    def framework(self) -> dict:
        return {"name": "openvino", "version": ov.get_version()}

    def device(self) -> dict:
        return {"requested": self.requested, "used": "cpu", "provider": "CPU"}

    def settings(self) -> dict:
        return {**self.applied, "precision": self.precision, "precision_evidence": self.evidence}


if __name__ == "__main__":
    main("openvino", OpenVinoEngine)
