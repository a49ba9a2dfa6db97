"""GPU memory per shape: NVML samples are attributed to the shape the runner is on (a fake NVML stands in
for the driver; the subject is the launcher's bookkeeping)."""

import json
import subprocess
import sys
import time

from embedperf.runners.launch import _GpuWatch


class FakeNvml:
    def __init__(self):
        self.used = 1000 * 2**20  # the device's used memory before the runner starts

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type("Info", (), {"used": self.used})()

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return []  # as inside a container: pids are the host's, so the device's growth is used


def test_each_shape_gets_its_own_peak_not_the_process_maximum(tmp_path):
    result = tmp_path / "r.result.json"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        nvml = FakeNvml()
        watch = _GpuWatch(proc, result, nvml=nvml)
        result.write_text(json.dumps({"shapes": []}))  # loaded, no shape yet
        nvml.used += 300 * 2**20  # weights + the first shape's activations
        watch.sample()
        nvml.used += 900 * 2**20  # a large first shape
        watch.sample()
        time.sleep(0.01)
        result.write_text(json.dumps({"shapes": [{"batch": 32}]}))  # shape 0 done
        nvml.used -= 1000 * 2**20  # its activations freed; the small second shape
        watch.sample()
        assert watch.per_shape == [1200.0, 200.0]
        assert watch.peak_mb == 1200.0
        assert "growth" in watch.note
    finally:
        proc.kill()
        proc.wait()


def test_without_nvml_nothing_is_measured_and_the_note_says_why(tmp_path):
    class Broken:
        def nvmlDeviceGetCount(self):
            raise RuntimeError("NVML Shared Library Not Found")

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    watch = _GpuWatch(proc, tmp_path / "r.json", nvml=Broken())
    assert watch.nvml is None and "NVML unavailable" in watch.note and watch.per_shape == []
