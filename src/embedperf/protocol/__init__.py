"""The runner protocol: request and result documents, validated against one JSON Schema each.

The schemas (request.schema.json, result.schema.json) are the written contract shared
with the Rust and C++ runners; docs/protocol.md explains them.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

PROTOCOL_VERSION = 1


@lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    """The JSON Schema for 'request' or 'result'."""
    return json.loads(resources.files("embedperf.protocol").joinpath(f"{kind}.schema.json").read_text())


def validate(kind: str, document: dict) -> None:
    """Raise jsonschema.ValidationError when a document breaks the contract."""
    import jsonschema

    jsonschema.validate(document, schema(kind))


def write_json_atomic(path: Path | str, document: dict) -> None:
    """Write JSON so a reader never sees half a file: temp file in the same folder, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
