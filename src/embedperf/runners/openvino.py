"""OpenVINO runner: the fp32 IR compiled for the CPU with explicit precision and threads."""

from __future__ import annotations

import numpy as np
import openvino as ov

from embedperf.runners.harness import INPUT_NAMES, main, missing_input

PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def _input_name(port) -> str:
    """A compiled input's name: the protocol name among its tensor names, else any of them."""
    names = port.get_names()
    return next((n for n in INPUT_NAMES if n in names), None) or port.get_any_name()


class OpenVinoEngine:
    def __init__(self, request: dict):
        self.requested = request["device"]
        if self.requested != "cpu":
            raise RuntimeError(f"the openvino runner runs on cpu only; {self.requested} was requested")
        core = ov.Core()
        model = core.read_model(request["artifact"]["path"])
        # Set precision explicitly: on bf16-capable CPUs OpenVINO's default inference
        # precision is bf16, which would silently change the numbers.
        self.config = {
            "INFERENCE_PRECISION_HINT": PRECISION[request["precision"]],
            "INFERENCE_NUM_THREADS": request["threads"]["intra_op"],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self.compiled = core.compile_model(model, "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.inputs = [_input_name(port) for port in self.compiled.inputs]  # feed exactly what the graph declares
        self.applied = {k: str(self.compiled.get_property(k)) for k in self.config}

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        try:
            feed = {name: inputs[name] for name in self.inputs}
        except KeyError as e:
            raise missing_input(e.args[0], inputs) from None
        result = self.request.infer(feed)
        return np.array(result[self.output], copy=True)

    def framework(self) -> dict:
        return {"name": "openvino", "version": ov.get_version()}

    def device(self) -> dict:
        return {"requested": self.requested, "used": "cpu", "provider": "CPU"}

    def settings(self) -> dict:
        return self.applied


if __name__ == "__main__":
    main("openvino", OpenVinoEngine)
