"""PyTorch runner: the reference artifact in eager PyTorch (sdpa attention for timing, eager for the reference pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from embedperf.models.embedder import load_reference
from embedperf.runners.harness import main

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        artifact = request["artifact"]
        self.attention = artifact.get("attention") or "sdpa"
        extra = {"modality": request["model"]["modality"]} if request["model"].get("modality") else {}
        self.model = load_reference(Path(artifact["path"]), attention=self.attention, device=str(self.dev), **extra)
        dtype = DTYPES[request["precision"]]
        if dtype != torch.float32:
            self.model = self.model.to(dtype)
        self.dtype = dtype
        self.sync = torch.cuda.synchronize if self.dev.type == "cuda" else (lambda: None)

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            # ids and masks stay int64; pixels take the model's dtype (fp16/bf16 runs)
            tensors = {name: torch.from_numpy(array).to(self.dev, dtype=self.dtype if array.dtype.kind == "f" else None)
                       for name, array in inputs.items()}
            out = self.model(**tensors)
            # .cpu() waits for the device; the explicit sync keeps that true if the copy ever becomes async
            self.sync()
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
                "attn_implementation": self.attention, "dtype": str(self.dtype), "inference_mode": True}


if __name__ == "__main__":
    main("torch", TorchEngine)
