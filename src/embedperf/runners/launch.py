"""Start one runner process and wait for it: blocking, with a time cap and a memory cap.

The parent never busy-waits: on a 2-core machine a spinning parent would steal half
the machine from the measurement. It blocks in select() on a pidfd (the kernel wakes
it when the child exits or the cap passes).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embedperf.protocol import write_json_atomic
from embedperf.runners.registry import Runtime, command, runner_env


@dataclass
class Outcome:
    """How a runner process ended, and what it wrote."""

    result: dict | None
    returncode: int | None
    timed_out: bool
    over_memory: bool
    log: Path
    wall_s: float
    gpu_peak_mb: float | None = None  # NVML, when the device is CUDA (see _GpuWatch): the process's peak
    gpu_peak_by_shape: list[float] | None = None  # ... and each shape's, in request order
    gpu_memory_note: str | None = None

    def why(self) -> str:
        """One line saying why shapes are missing from the result."""
        if self.timed_out:
            return "runner hung: killed at its time cap"
        if self.over_memory:
            return "runner exceeded the memory limit and was killed"
        if self.returncode is not None and self.returncode < 0:
            sig = signal.Signals(-self.returncode).name
            hint = " (likely out of memory)" if sig == "SIGKILL" else ""
            return f"runner crashed: killed by {sig}{hint}"
        if self.result and self.result.get("error"):
            err = self.result["error"]
            return f"{err.get('kind', 'error')}: {err.get('message', '')}".strip()
        if self.returncode:
            tail = _last_line(self.log)
            return f"runner exited with code {self.returncode}" + (f": {tail}" if tail else "")
        return "runner ended without reporting this shape"


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children's (one level) from /proc."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    except OSError:
        pass
    return total


class _MemoryGuard(threading.Thread):
    """Kills the runner when its RSS passes the limit.

    An unbounded allocation would otherwise wake the kernel's OOM killer, which may
    pick the orchestrator or another process; RLIMIT_AS is no answer either, because
    CUDA and some runtimes reserve far more address space than they use.
    """

    def __init__(self, proc: subprocess.Popen, limit_mb: float, period_s: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.limit_mb, self.period_s = proc, limit_mb, period_s
        self.stop = threading.Event()
        self.tripped = False

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            if _rss_mb(self.proc.pid) > self.limit_mb:
                self.tripped = True
                _kill_group(self.proc)
                return


def _shapes_written(path: Path) -> int | None:
    """How many shape entries a runner's result file holds now (None while it is absent or half-read)."""
    try:
        return len(json.loads(path.read_text()).get("shapes") or [])
    except (OSError, ValueError, AttributeError):
        return None


class _GpuWatch(threading.Thread):
    """Peak GPU memory of the runner through NVML (nvidia-ml-py), polled while it runs, per shape.

    The runner's own usage when NVML lists its pid; inside a container, where pids differ from the
    host's, the growth of the device's used memory over its level at start instead (the note says which).
    The runner rewrites its result file after each shape, so a sample taken while k shapes are written
    belongs to shape k: `per_shape[k]` is that shape's peak (its load and warm-up included), not the
    process's maximum copied into every shape.
    """

    def __init__(self, proc: subprocess.Popen, result_path: Path | None = None, period_s: float = 0.1, nvml=None):
        super().__init__(daemon=True)
        self.proc, self.result_path, self.period_s = proc, result_path, period_s
        self.stop = threading.Event()
        self.peak_mb: float | None = None
        self.per_shape: list[float] = []
        self.note: str | None = None
        self._mtime: float | None = None
        self._shape = 0
        try:
            if nvml is None:
                import pynvml as nvml

                nvml.nvmlInit()
            self.nvml = nvml
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            self.baseline = sum(nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles)
        except Exception as e:  # no NVML, no driver: say so in the cell, measure nothing
            self.nvml = None
            self.note = f"GPU memory not measured: NVML unavailable ({type(e).__name__}: {e})".splitlines()[0]

    def _current_shape(self) -> int:
        """The index of the shape the runner is on: how many its result file holds (re-read when it changes)."""
        if self.result_path is None:
            return 0
        try:
            mtime = self.result_path.stat().st_mtime_ns
        except OSError:
            return self._shape
        if mtime != self._mtime:
            written = _shapes_written(self.result_path)
            if written is not None:
                self._mtime, self._shape = mtime, written
        return self._shape

    def sample(self) -> None:
        own = 0
        for h in self.handles:
            for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == self.proc.pid and p.usedGpuMemory:
                    own += p.usedGpuMemory
        if own:
            value, self.note = own / 2**20, "NVML, the runner process's own memory"
        else:
            used = sum(self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles)
            value = max(0, used - self.baseline) / 2**20
            self.note = self.note or "NVML, growth of the device's used memory while the runner ran"
        self.peak_mb = max(self.peak_mb or 0.0, value)
        k = self._current_shape()
        while len(self.per_shape) <= k:
            self.per_shape.append(0.0)
        self.per_shape[k] = max(self.per_shape[k], value)

    def run(self) -> None:
        if self.nvml is None:
            return
        while not self.stop.wait(self.period_s):
            try:
                self.sample()
            except Exception:  # the process may be gone between two calls
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_setup() -> None:
    os.setsid()  # own process group: a hung runner and its helpers are killed together
    try:  # if memory runs out anyway, the kernel should take the runner, not the orchestrator
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Block until the child exits or the timeout passes; True when it exited."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if ready:
            proc.wait()
            return True
        return False
    finally:
        os.close(fd)


def launch(runtime: Runtime, request: dict, workdir: Path, tag: str, timeout_s: float,
           memory_limit_mb: float | None, env: dict[str, str], gpu: bool = False) -> Outcome:
    """Write the request, start the runner, wait for it, read what it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    req_path = workdir / f"{tag}.request.json"
    res_path = workdir / f"{tag}.result.json"
    log_path = workdir / f"{tag}.log"
    res_path.unlink(missing_ok=True)
    write_json_atomic(req_path, request)
    child_env = {**os.environ, **env, **runner_env(runtime)}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command(runtime, req_path, res_path), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env, preexec_fn=_child_setup)
        guard = _MemoryGuard(proc, memory_limit_mb) if memory_limit_mb else None
        if guard:
            guard.start()
        watch = _GpuWatch(proc, res_path) if gpu else None
        if watch:
            watch.start()
        try:
            exited = _wait(proc, timeout_s)
        except BaseException:
            # Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt): the runner lives in a process
            # group of its own, which no terminal signal reaches, so it must be stopped here or it would
            # go on measuring, adopted by init, and compete with whatever runs next.
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            for thread in (guard, watch):
                if thread:
                    thread.stop.set()
                    thread.join()
        if not exited:
            _kill_group(proc)
            proc.wait()
        else:
            _kill_group(proc)  # leftovers of the runner's group, if any
    result = None
    if res_path.exists():
        try:
            result = json.loads(res_path.read_text())
        except json.JSONDecodeError:
            result = None
    return Outcome(result=result, returncode=proc.returncode, timed_out=not exited,
                   over_memory=bool(guard and guard.tripped), log=log_path, wall_s=time.perf_counter() - t0,
                   gpu_peak_mb=watch.peak_mb if watch else None,
                   gpu_peak_by_shape=watch.per_shape if watch and watch.nvml else None,
                   gpu_memory_note=watch.note if watch else None)
