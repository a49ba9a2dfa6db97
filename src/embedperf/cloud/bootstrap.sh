#!/usr/bin/env bash
# The script every embedperf benchmark host runs (cloud-init starts it; see infra/terraform).
# It also runs locally, which is how it is tested (tests/infra/test_bootstrap.py):
#
#   1. fetch the package and the suite from EMBEDPERF_INPUT (s3://bucket/runs/<id>/input/ or a folder)
#   2. install embedperf from the package and build the native runners
#      (skipped when EMBEDPERF_PYTHON names an interpreter that already has embedperf)
#   3. run every cell of the suite whose device this machine has (cpu; cpu and cuda on a GPU host)
#   4. upload each result document to EMBEDPERF_RESULTS (s3://bucket/runs/<id>/results/<machine>/
#      or a folder) as soon as it is written, so a spot interruption loses at most one cell
#   5. write host-status.json there, and power off when EMBEDPERF_SHUTDOWN=1 (the instance's
#      shutdown behaviour is terminate, so that ends its billing)
#
# Environment (the cloud host gets these from /etc/embedperf/env):
#   EMBEDPERF_INPUT     required: where the package and suite are
#   EMBEDPERF_RESULTS   required: where result documents go
#   EMBEDPERF_PACKAGE   file name of the package under INPUT (default: the only *.tar.gz or *.whl there)
#   EMBEDPERF_SUITE     file name of the suite under INPUT (default suite.yaml)
#   EMBEDPERF_MACHINE   this machine's name (default: the host name)
#   EMBEDPERF_DEVICE    cpu, cuda or auto (default auto: cuda when nvidia-smi sees a GPU)
#   EMBEDPERF_WORKDIR   scratch folder (default ${TMPDIR:-/tmp}/embedperf-bootstrap)
#   EMBEDPERF_PYTHON    use this interpreter (embedperf already installed) instead of installing
#   EMBEDPERF_SETUP     1: install system packages and toolchains first (cloud hosts); default 0
#   EMBEDPERF_NATIVE    1 (default): build the native runners when installing from a source archive
#   EMBEDPERF_RUN_ARGS  extra `embedperf run` options (e.g. "--min-seconds 0"), word-split
#   EMBEDPERF_SHUTDOWN  1: power off at the end, success or not; default 0
#   EMBEDPERF_LOG       a log file to upload next to the results at the end (the cloud host's
#                       /var/log/embedperf-bootstrap.log)
#   AWS_ENDPOINT_URL    an S3-compatible endpoint instead of AWS (honoured by boto3)
set -Eeuo pipefail
export HOME=${HOME:-/root}  # cloud-init may start us without one

INPUT=${EMBEDPERF_INPUT:?EMBEDPERF_INPUT must name the input (s3://... or a folder)}
RESULTS=${EMBEDPERF_RESULTS:?EMBEDPERF_RESULTS must name the destination (s3://... or a folder)}
MACHINE=${EMBEDPERF_MACHINE:-$(hostname -s 2>/dev/null || echo local)}
DEVICE=${EMBEDPERF_DEVICE:-auto}
PACKAGE=${EMBEDPERF_PACKAGE:-}
SUITE=${EMBEDPERF_SUITE:-suite.yaml}
WORKDIR=${EMBEDPERF_WORKDIR:-${TMPDIR:-/tmp}/embedperf-bootstrap}
SETUP=${EMBEDPERF_SETUP:-0}
NATIVE=${EMBEDPERF_NATIVE:-1}
SHUTDOWN=${EMBEDPERF_SHUTDOWN:-0}
PY=${EMBEDPERF_PYTHON:-}
BOOT_PY=""
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STATUS=running
ERROR=""
CELLS_DIR="$WORKDIR/results"
UPLOAD_ARGS=()

say() { echo "[embedperf-bootstrap $(date -u +%H:%M:%S)] $*"; }

# --- S3 or folder I/O (boto3 through embedperf.cloud once installed, inline before) ----------

fetch_input() {  # fetch_input NAME -> $WORKDIR/input/NAME
  local name=$1
  mkdir -p "$WORKDIR/input"
  case "$INPUT" in
    s3://*)
      "$BOOT_PY" - "$INPUT" "$name" "$WORKDIR/input/$name" <<'PYEOF'
import sys, boto3
uri, name, dest = sys.argv[1:]
bucket, _, prefix = uri[len("s3://"):].partition("/")
key = prefix.rstrip("/") + "/" + name if prefix else name
boto3.client("s3").download_file(bucket, key, dest)
PYEOF
      ;;
    *) cp "$INPUT/$name" "$WORKDIR/input/$name" ;;
  esac
}

upload_one() {  # upload_one FILE: to RESULTS, even before embedperf is installed
  if [ -n "$PY" ] && "$PY" -m embedperf.cloud upload "$1" "$RESULTS"; then return 0; fi
  case "$RESULTS" in
    s3://*)
      [ -n "${BOOT_PY:-}" ] || return 1
      "$BOOT_PY" - "$1" "$RESULTS" <<'PYEOF'
import os, sys, boto3
path, uri = sys.argv[1:]
bucket, _, prefix = uri[len("s3://"):].partition("/")
prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
boto3.client("s3").upload_file(path, bucket, prefix + os.path.basename(path))
PYEOF
      ;;
    *) mkdir -p "$RESULTS" && cp "$1" "$RESULTS/" ;;
  esac
}

sweep() {  # upload every cell document written so far that is not uploaded yet
  [ -n "$PY" ] && [ -d "$CELLS_DIR" ] || return 0
  "$PY" -m embedperf.cloud upload-new "$CELLS_DIR" "$RESULTS" --ledger "$WORKDIR/uploaded.txt" || say "upload sweep failed (will retry)"
}

put_status() {
  local file="$WORKDIR/host-status.json" cells=0 error
  error=$(printf '%s' "$ERROR" | tr -d '"\\\n\t')
  [ -d "$CELLS_DIR" ] && cells=$(cd "$CELLS_DIR" && find . -name '*.json' ! -name run.json ! -path './*/work/*' ! -path './*/forks/*' | wc -l)
  printf '{"schema": "embedperf/host-status/1", "machine": "%s", "device": "%s", "status": "%s", "error": "%s", "started": "%s", "updated": "%s", "cells_written": %s}\n' \
    "$MACHINE" "$DEVICE" "$STATUS" "$error" "$STARTED" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$cells" > "$file"
  upload_one "$file" || say "could not upload host-status.json"
}

finish() {
  local rc=$?
  set +e
  trap - ERR
  if [ "$STATUS" = running ]; then
    if [ $rc -eq 0 ]; then STATUS=done; else STATUS=failed; ERROR=${ERROR:-"exit $rc"}; fi
  fi
  if [ "${#UPLOAD_ARGS[@]}" -eq 0 ] || [ "$STATUS" = failed ]; then sweep; fi
  put_status
  if [ -n "${EMBEDPERF_LOG:-}" ] && [ -f "$EMBEDPERF_LOG" ]; then
    upload_one "$EMBEDPERF_LOG" || say "could not upload $EMBEDPERF_LOG"
  fi
  say "finished: $STATUS${ERROR:+ ($ERROR)}"
  if [ "$SHUTDOWN" = 1 ]; then
    say "powering off (shutdown behaviour terminate)"
    sync
    systemctl poweroff || shutdown -P now
  fi
  exit $rc
}
trap finish EXIT
on_err() { ERROR="line $1: $(printf '%s' "$2" | head -n 1)"; }
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

mkdir -p "$WORKDIR" "$CELLS_DIR"
say "machine $MACHINE, device $DEVICE, input $INPUT, results $RESULTS"

# --- 1. system packages (cloud hosts only) ------------------------------------------------

if [ "$SETUP" = 1 ]; then
  say "installing system packages"
  export DEBIAN_FRONTEND=noninteractive
  if command -v apt-get >/dev/null; then
    apt-get update -q
    apt-get install -y -q python3 python3-venv python3-dev build-essential cmake git curl make pkg-config
  elif command -v dnf >/dev/null; then
    dnf install -y -q python3.11 python3.11-devel gcc gcc-c++ cmake git make tar gzip
  fi
  if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal || say "rustup failed: the Rust runners will be skipped"
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  fi
fi

# A Python >= 3.11 to install into (not needed with EMBEDPERF_PYTHON). GPU images often ship an
# older one: a cloud host then gets one from uv.
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
SYS_PY=""
if [ -z "$PY" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if found=$(command -v "$candidate") && py_ok "$found"; then SYS_PY=$found; break; fi
  done
  if [ -z "$SYS_PY" ] && [ "$SETUP" = 1 ]; then
    say "no Python >= 3.11 here: installing one with uv"
    curl -LsSf https://astral.sh/uv/install.sh | sh
    "$HOME/.local/bin/uv" python install 3.12
    SYS_PY=$("$HOME/.local/bin/uv" python find 3.12)
  fi
  if [ -z "$SYS_PY" ]; then
    ERROR="no Python >= 3.11 (install one, set EMBEDPERF_PYTHON, or EMBEDPERF_SETUP=1)"
    exit 2
  fi
fi

# --- 2. the input ------------------------------------------------------------------------

if [ -n "$PY" ]; then
  BOOT_PY=$PY
else
  say "bootstrap environment (boto3) in $WORKDIR/boot"
  "$SYS_PY" -m venv "$WORKDIR/boot"
  "$WORKDIR/boot/bin/pip" install -q boto3
  BOOT_PY="$WORKDIR/boot/bin/python"
fi

if [ -z "$PACKAGE" ] && [ -z "$PY" ]; then
  case "$INPUT" in
    s3://*) ERROR="EMBEDPERF_PACKAGE is required with an s3:// input"; exit 2 ;;
    *) PACKAGE=$(cd "$INPUT" && ls -1 -- *.tar.gz *.whl 2>/dev/null | head -n 1) ;;
  esac
fi
say "fetching suite $SUITE${PACKAGE:+ and package $PACKAGE}"
fetch_input "$SUITE"
[ -n "$PACKAGE" ] && fetch_input "$PACKAGE"

# --- 3. install embedperf and build the native runners -----------------------------------

if [ -n "$PY" ]; then
  say "using the installed embedperf of $PY (no install)"
else
  case "$PACKAGE" in
    *.tar.gz)
      say "installing embedperf from the source archive $PACKAGE"
      rm -rf "$WORKDIR/src" && mkdir -p "$WORKDIR/src"
      tar -xzf "$WORKDIR/input/$PACKAGE" -C "$WORKDIR/src" --strip-components=1
      make -C "$WORKDIR/src" setup PYTHON="$SYS_PY"
      PY="$WORKDIR/src/.venv/bin/python"
      "$PY" -m pip install -q boto3
      if [ "$NATIVE" = 1 ]; then
        say "building the native runners"
        make -C "$WORKDIR/src" native PYTHON="$SYS_PY" || say "native build failed: those cells are skipped"
      fi
      ;;
    *.whl)
      say "installing embedperf from the wheel $PACKAGE (no native runners: a wheel has no native sources)"
      "$SYS_PY" -m venv "$WORKDIR/venv"
      "$WORKDIR/venv/bin/pip" install -q "$WORKDIR/input/$PACKAGE" boto3
      PY="$WORKDIR/venv/bin/python"
      ;;
    *) ERROR="no package (*.tar.gz or *.whl) in the input"; exit 2 ;;
  esac
fi
"$PY" -m embedperf.cli runtimes || true
put_status

# --- 4. run every cell whose device this machine has -------------------------------------

if [ "$DEVICE" = auto ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then DEVICE=cuda; else DEVICE=cpu; fi
fi
case "$DEVICE" in
  cuda) HAVE="cpu cuda" ;;
  cpu) HAVE="cpu" ;;
  *) ERROR="EMBEDPERF_DEVICE must be cpu, cuda or auto, not $DEVICE"; exit 2 ;;
esac

# `embedperf run --upload URI` uploads each document the moment it is written; where this
# embedperf has no such option, a background sweep uploads new documents every few seconds.
UPLOAD_ARGS=()
case "$RESULTS" in
  s3://*)
    if "$PY" -m embedperf.cli run --help 2>/dev/null | grep -q -- '--upload'; then
      UPLOAD_ARGS=(--upload "$RESULTS")
    fi
    ;;
esac

read -r -a RUN_ARGS <<< "${EMBEDPERF_RUN_ARGS:-}"
FAILED_DEVICES=""
# shellcheck disable=SC2086
DEVICES=$("$PY" -m embedperf.cloud devices "$WORKDIR/input/$SUITE" $HAVE)
[ -n "$DEVICES" ] || say "the suite has no cells for this machine's devices ($HAVE)"
for device in $DEVICES; do
  suite_file="$WORKDIR/suite-$device.yaml"
  "$PY" -m embedperf.cloud derive-suite "$WORKDIR/input/$SUITE" "$device" "$suite_file"
  say "running the $device cells of the suite"
  "$PY" -m embedperf.cli run --suite "$suite_file" --results "$CELLS_DIR" "${UPLOAD_ARGS[@]}" "${RUN_ARGS[@]}" &
  run_pid=$!
  # bounded by the run itself (and on a cloud host by the hard time limit)
  while kill -0 "$run_pid" 2>/dev/null; do
    sleep 5
    [ ${#UPLOAD_ARGS[@]} -gt 0 ] || sweep
  done
  run_rc=0
  wait "$run_pid" || run_rc=$?
  if [ "$run_rc" -eq 3 ]; then  # the run finished; some cells failed, and their documents say why
    say "the $device run finished with failed cells (see their documents)"
  elif [ "$run_rc" -ne 0 ]; then
    FAILED_DEVICES="$FAILED_DEVICES $device"
    [ ${#UPLOAD_ARGS[@]} -eq 0 ] || sweep  # documents that --upload may not have sent
  fi
  [ ${#UPLOAD_ARGS[@]} -gt 0 ] || sweep
done

if [ -n "$FAILED_DEVICES" ]; then
  STATUS=failed
  ERROR="embedperf run failed for:$FAILED_DEVICES"
  exit 1
fi
