"""PyTorch runner: the reference artifact in eager PyTorch (sdpa attention for timing, eager for the reference pass).

Precision is honest: fp16/bf16 cast the whole model and run only where the device has native kernels
for that dtype; int8 is dynamic quantization of every nn.Linear (int8 weights per output channel,
activations quantized per call) on the CPU. Anything else is refused (runners/refusal.py), never run
at fp32 under another label. settings.precision says what ran and settings.precision_evidence why.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from embedperf.models.embedder import OUTPUT_NAMES, load_reference
from embedperf.precision import NATIVE_FLAGS, int8_kernel, native_flag
from embedperf.runners.harness import main
from embedperf.runners.refusal import Unsupported

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _onednn_supports(precision: str) -> bool:
    """Whether oneDNN (torch's CPU matmul for fp16/bf16) reports native support for the dtype."""
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return torch.backends.mkldnn.is_available() and bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def check_float_precision(precision: str, dev: torch.device) -> dict:
    """Evidence that `precision` (fp16/bf16) runs natively on `dev`; raises Unsupported when it would not."""
    if dev.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise Unsupported(f"torch bf16 on {torch.cuda.get_device_name(dev)}: torch.cuda.is_bf16_supported() "
                              "is False (bf16 needs compute capability 8.0 or newer)")
        return {"kernels": f"CUDA {precision} ({torch.cuda.get_device_name(dev)})"}
    flag = native_flag(precision)
    onednn = _onednn_supports(precision)
    if not (flag and onednn):
        why = [] if flag else [f"no {' or '.join(NATIVE_FLAGS[precision])} CPU flag"]
        if not onednn:
            why.append(f"oneDNN reports no native {precision}")
        raise Unsupported(f"torch {precision} on this CPU would be emulated ({'; '.join(why)}): not a {precision} "
                          "result worth timing")
    return {"kernels": f"oneDNN native {precision} ({flag})"}


def quantize_int8(model: torch.nn.Module, dev: torch.device) -> tuple[torch.nn.Module, dict]:
    """Dynamic int8 quantization of every nn.Linear (weights per output channel); evidence of what it did."""
    if dev.type != "cpu":
        raise Unsupported(f"torch dynamic int8 quantization runs on the CPU only; {dev} was requested")
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:
        raise Unsupported(f"this torch ({torch.__version__}) has no torch.ao.quantization.quantize_dynamic: {e}") from e
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm", "onednn"):
        raise Unsupported(f"torch's quantized engine is {engine!r}: no x86 int8 kernels on this build")
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao but still shipped and working in 2.15
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # in place: a copy would keep the fp32 weights alive beside the int8 ones and inflate the peak RSS
        quantized = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                     inplace=True)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    converted = sum(isinstance(m, DynamicLinear) for m in quantized.modules())
    left = sum(type(m) is torch.nn.Linear for m in quantized.modules())
    if not converted:
        raise Unsupported("torch dynamic quantization converted no nn.Linear of this model")
    return quantized, {
        "quantization": "dynamic int8: nn.Linear weights qint8 per output channel, activations quantized per call "
                        "(torch.ao.quantization.quantize_dynamic, per_channel_dynamic_qconfig)",
        "int8_linear_layers": converted, "fp32_linear_layers": left,
        "quantized_engine": engine, "kernels": int8_kernel(),
        "not_quantized": "embeddings, layer norms, attention products (activation x activation) stay fp32",
    }


class TorchEngine:
    def __init__(self, request: dict):
        threads = request["threads"]
        torch.set_num_threads(threads["intra_op"])
        try:
            torch.set_num_interop_threads(threads["inter_op"])
        except RuntimeError:  # already set by an earlier parallel region
            pass
        self.requested = request["device"]
        self.dev = torch.device(self.requested)
        if self.dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
        precision = request["precision"]
        if precision not in (*DTYPES, "int8"):
            raise Unsupported(f"the torch runner knows no precision {precision!r}")
        # refuse before loading: a refusal costs no model load
        evidence = check_float_precision(precision, self.dev) if precision in ("fp16", "bf16") else {}
        artifact = request["artifact"]
        self.attention = artifact.get("attention") or "sdpa"
        extra = {"modality": request["model"]["modality"]} if request["model"].get("modality") else {}
        self.outputs = tuple(request["model"].get("outputs") or ["dense"])
        if self.outputs != ("dense",):
            extra["outputs"] = self.outputs
        self.model = load_reference(Path(artifact["path"]), attention=self.attention, device=str(self.dev), **extra)
        self.dtype = DTYPES.get(precision, torch.float32)  # int8: inputs and the unquantized rest stay fp32
        if precision == "int8":
            self.model, evidence = quantize_int8(self.model, self.dev)
        elif self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        self.evidence = {**evidence, "parameter_dtypes": sorted({str(p.dtype) for p in self.model.parameters()})}
        self.precision = self._applied(precision)
        self.sync = torch.cuda.synchronize if self.dev.type == "cuda" else (lambda: None)

    def _applied(self, requested: str) -> str:
        """The precision the loaded model really holds; a mismatch with the request is a refusal."""
        if requested == "int8":
            return "int8"  # quantize_int8 refused already when no layer was converted
        floats = {p.dtype for p in self.model.parameters() if p.is_floating_point()}
        if floats != {self.dtype}:
            raise Unsupported(f"torch {requested}: the model's parameters are {sorted(map(str, floats))} after the "
                              f"cast, not only {self.dtype}")
        return requested

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            # ids and masks stay int64; pixels take the model's dtype (fp16/bf16 runs)
            tensors = {name: torch.from_numpy(array).to(self.dev, dtype=self.dtype if array.dtype.kind == "f" else None)
                       for name, array in inputs.items()}
            out = self.model(**tensors)
            # .cpu() waits for the device; the explicit sync keeps that true if the copy ever becomes async
            self.sync()
            if isinstance(out, tuple):  # an output mode: dense, then sparse and/or colbert (EmbeddingModel)
                return {OUTPUT_NAMES[o]: t.float().cpu().numpy() for o, t in zip(self.model.outputs, out)}
            return out.float().cpu().numpy()

    def framework(self) -> dict:
        import transformers

        return {"name": "torch", "version": torch.__version__, "transformers": transformers.__version__,
                "attention": self.attention}

    def device(self) -> dict:
        name = torch.cuda.get_device_name(self.dev) if self.dev.type == "cuda" else None
        return {"requested": self.requested, "used": str(self.dev), "provider": name}

    def settings(self) -> dict:
        return {"num_threads": torch.get_num_threads(), "num_interop_threads": torch.get_num_interop_threads(),
                "attn_implementation": self.attention, "dtype": str(self.dtype), "inference_mode": True,
                "precision": self.precision, "precision_evidence": self.evidence}


if __name__ == "__main__":
    main("torch", TorchEngine)
