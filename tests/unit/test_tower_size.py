"""What a tower cell says it loads from disk: one tower's tensors, not the whole two-tower checkpoint."""

import numpy as np
from safetensors.numpy import save_file

from embedperf.prepare.cache import Prepared, tower_bytes


def test_each_tower_counts_only_its_own_tensors(tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    save_file({"text_model.embeddings.weight": np.zeros((100, 8), np.float32),  # 3200 bytes
               "text_projection.weight": np.zeros((8, 4), np.float32),  # 128
               "vision_model.patch.weight": np.zeros((10, 8), np.float32),  # 320
               "visual_projection.weight": np.zeros((8, 4), np.float32),  # 128
               "logit_scale": np.zeros((1,), np.float32)}, str(ref / "model.safetensors"))
    assert tower_bytes(ref / "model.safetensors", "text") == 3200 + 128
    assert tower_bytes(ref / "model.safetensors", "image") == 320 + 128
    prepared = Prepared(tmp_path, {"towers": ["text", "image"], "artifacts": {}})
    assert prepared.size_bytes("reference", "image") == 448
    whole = Prepared(tmp_path, {"artifacts": {}})  # a text model: the reference folder as a whole
    assert whole.size_bytes("reference") == (ref / "model.safetensors").stat().st_size
