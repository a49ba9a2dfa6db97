"""Helpers the bootstrap script calls on the machine: `python -m embedperf.cloud COMMAND`.

  upload FILE DEST                     copy FILE to DEST (s3://bucket/prefix/ or a folder)
  upload-new FOLDER DEST --ledger F    upload the cell documents not listed in F yet
  devices SUITE DEVICE...              the suite's devices this machine has (space-separated)
  derive-suite SUITE DEVICE OUT        the plain suite for one device (no machines/cloud keys)
"""

from __future__ import annotations

import sys
from pathlib import Path

from embedperf.spec import SpecError


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from embedperf.cloud import machines, s3

    try:
        if len(args) == 3 and args[0] == "upload":
            s3.upload_file(Path(args[1]), args[2])
        elif len(args) == 5 and args[0] == "upload-new" and args[3] == "--ledger":
            for p in s3.upload_new(Path(args[1]), args[2], Path(args[4])):
                print(f"uploaded {p.name}", flush=True)
        elif len(args) >= 2 and args[0] == "devices":
            have = set(args[2:])
            print(" ".join(d for d in machines.suite_devices(machines._read(Path(args[1]))) if d in have))
        elif len(args) == 4 and args[0] == "derive-suite":
            machines.derive_suite(Path(args[1]), args[2], Path(args[3]))
        else:
            print(__doc__.strip(), file=sys.stderr)
            return 2
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
