"""ONNX Runtime through its Python binding, with the session options every ORT runner shares."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from embedperf.runners import ort_precision
from embedperf.runners.harness import main, missing_input
from embedperf.runners.outputs import GRAPH_OUTPUTS
from embedperf.runners.refusal import Unsupported

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}


def library_path() -> Path:
    """The libonnxruntime shared library this wheel carries (the native runners load the same one)."""
    capi = Path(ort.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    return libs[0] if libs else capi


class OrtEngine:
    def __init__(self, request: dict):
        options = request.get("onnxruntime") or {}
        # precision first: a refusal comes before any session is built
        precision = ort_precision.check(request, request["artifact"]["path"])
        threads = request["threads"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads["intra_op"]
        so.inter_op_num_threads = threads["inter_op"]
        so.graph_optimization_level = LEVELS[options.get("graph_optimization_level", "all")]
        so.execution_mode = MODES[options.get("execution_mode", "sequential")]
        so.enable_cpu_mem_arena = options.get("enable_cpu_mem_arena", True)
        spin = "1" if options.get("allow_spinning", True) else "0"
        config = {"session.intra_op.allow_spinning": spin, "session.inter_op.allow_spinning": spin}
        config.update(options.get("session_config") or {})  # the request's own entries win
        self.requested = request["device"]
        if self.requested.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Unsupported("this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu, installed in "
                                  "place of onnxruntime, has it)")
            # never fall back to the CPU silently: a cell must run where it says
            config["session.disable_cpu_ep_fallback"] = "1"
            device_id = int(self.requested.split(":")[1]) if ":" in self.requested else 0
            providers = [("CUDAExecutionProvider", {"device_id": device_id})]
        else:
            providers = ["CPUExecutionProvider"]
        for key, value in config.items():
            so.add_session_config_entry(key, value)
        self.applied = {**options, "intra_op_num_threads": so.intra_op_num_threads,
                        "inter_op_num_threads": so.inter_op_num_threads,
                        "allow_spinning": spin == "1", "session_config": config, **precision}
        self.session = ort.InferenceSession(request["artifact"]["path"], sess_options=so, providers=providers)
        asked = request["model"].get("outputs") or ["dense"]
        # fetched by name: an output mode's graph returns exactly its outputs, which the runner fetches all
        self.outputs = [GRAPH_OUTPUTS[o] for o in asked] if len(asked) > 1 else [self.session.get_outputs()[0].name]
        declared = [o.name for o in self.session.get_outputs()]
        if sorted(declared) != sorted(self.outputs) and len(asked) > 1:
            raise ValueError(f"the graph's outputs are {declared}, the request asks for {self.outputs}")
        self.several = len(asked) > 1
        self.inputs = [i.name for i in self.session.get_inputs()]  # feed exactly what the graph declares

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        try:
            feed = {name: inputs[name] for name in self.inputs}
        except KeyError as e:
            raise missing_input(e.args[0], inputs) from None
        out = self.session.run(self.outputs, feed)
        return dict(zip(self.outputs, out)) if self.several else out[0]

    def framework(self) -> dict:
        lib = library_path()
        digest = hashlib.sha256(lib.read_bytes()).hexdigest() if lib.is_file() else None
        return {"name": "onnxruntime", "version": ort.__version__, "binding": f"python onnxruntime {ort.__version__}",
                "library_path": str(lib), "library_sha256": digest}

    def device(self) -> dict:
        provider = self.session.get_providers()[0]
        used = self.requested if provider == "CUDAExecutionProvider" else "cpu"
        return {"requested": self.requested, "used": used, "provider": provider}

    def settings(self) -> dict:
        return self.applied


if __name__ == "__main__":
    main("onnxruntime-python", OrtEngine)
