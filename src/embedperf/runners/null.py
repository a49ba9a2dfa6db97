"""The null runner: loads nothing, does no work. It measures the harness itself, and on
request misbehaves (crash, hang, exit, unbounded allocation) so fault handling can be tested."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from embedperf.runners.harness import main


class NullEngine:
    def __init__(self, request: dict):
        self.requested = request["device"]
        self.dim = request["model"]["output_dim"]
        self.fault = request.get("fault") or None
        self.out: dict[int, np.ndarray] = {}  # rows -> preallocated zeros

    def before_shape(self, index: int, shape: dict) -> None:
        self.out = {shape["batch"]: np.zeros((shape["batch"], self.dim), dtype=np.float32)}
        if not self.fault or self.fault.get("at_shape", 0) != index:
            return
        kind = self.fault["kind"]
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif kind == "hang":
            while True:
                time.sleep(3600)
        elif kind == "exit":
            os._exit(3)
        elif kind == "oom":
            hoard = []
            while True:  # touch every page so the memory is really resident
                hoard.append(np.ones(16 << 20, dtype=np.float32))

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Zeros [rows, output_dim] for any workload kind (text, image, a corpus batch)."""
        rows = next(iter(inputs.values())).shape[0]
        out = self.out.get(rows)
        if out is None:  # a corpus batch of a new row count: allocated once, in warm-up or the first pass
            out = self.out[rows] = np.zeros((rows, self.dim), dtype=np.float32)
        return out

    def framework(self) -> dict:
        return {"name": "none", "version": None}

    def device(self) -> dict:
        return {"requested": self.requested, "used": self.requested, "provider": None}

    def settings(self) -> dict:
        return {}


if __name__ == "__main__":
    main("null", NullEngine)
