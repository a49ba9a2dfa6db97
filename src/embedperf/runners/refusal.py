"""A runner's refusal: the runtime cannot run what the request asks (a precision, a device) natively.

A runner raises `Unsupported` while loading instead of running something else under the requested
label (fp32 under a bf16 label, say). The harness writes it as `error: {"kind": "unsupported",
"message": ...}` and the orchestrator stores the cell as `skipped` with the message as its reason.
Framework-free, so every Python runner and the harness can import it.
"""

from __future__ import annotations


class Unsupported(RuntimeError):
    """This runtime cannot honour the request here; the message says what was asked and why not."""
