#!/usr/bin/env bash
# Build the C++ runners (Release) into ${XDG_CACHE_HOME:-$HOME/.cache}/embedperf/cpp-build
# and print the two binaries' paths. Runs nothing else.
#
#   ONNXRUNTIME_ROOT  official ONNX Runtime release folder (include/, lib/); if unset and
#                     no system install is found, scripts/assemble_onnxruntime.sh makes one
#                     from the Python wheel ($PYTHON, default /work/main/.venv/bin/python)
#                     plus Debian trixie headers.
#   BUILD_DIR         override the build folder
#   CMAKE_ARGS        extra arguments for the configure step
#   JOBS              parallel build jobs (default: nproc)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="${BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embedperf/cpp-build}"
log() { echo "[build] $*" >&2; }

system_ort() {
  local inc lib
  for inc in /usr/include /usr/local/include /usr/include/onnxruntime /usr/local/include/onnxruntime; do
    [[ -f "$inc/onnxruntime_cxx_api.h" ]] || continue
    for lib in /usr/lib /usr/lib/*-linux-gnu /usr/local/lib /usr/lib64 /usr/local/lib64; do
      [[ -e "$lib/libonnxruntime.so" ]] && return 0
    done
  done
  return 1
}
system_json() {
  compgen -G "/usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null \
    || compgen -G "/usr/lib/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null \
    || compgen -G "/usr/lib/*/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null \
    || compgen -G "/usr/local/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null \
    || compgen -G "/usr/local/lib/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null
}

ASSEMBLE=()
if [[ -n "${ONNXRUNTIME_ROOT:-}" ]]; then
  log "ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT (given)"
  ASSEMBLE+=(--no-onnxruntime)
elif system_ort; then
  log "ONNX Runtime: system install"
  ASSEMBLE+=(--no-onnxruntime)
fi
NLOHMANN_JSON_ROOT="${NLOHMANN_JSON_ROOT:-}"
if [[ -n "$NLOHMANN_JSON_ROOT" ]] || system_json; then
  ASSEMBLE+=(--no-json)
fi
if [[ ${#ASSEMBLE[@]} -lt 2 ]]; then
  out=$("$HERE/scripts/assemble_onnxruntime.sh" "${ASSEMBLE[@]}")
  while IFS='=' read -r k v; do
    case "$k" in
      ONNXRUNTIME_ROOT) [[ -n "$v" ]] && ONNXRUNTIME_ROOT="$v" ;;
      NLOHMANN_JSON_ROOT) [[ -n "$v" ]] && NLOHMANN_JSON_ROOT="$v" ;;
    esac
  done <<< "$out"
fi

# The build folder is shared by every checkout on this machine (a fresh clone reuses it):
# CMake refuses a cache made from another source folder, so start that cache afresh.
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  prev=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")
  if [[ -n "$prev" && "$(cd "$prev" 2>/dev/null && pwd -P)" != "$(cd "$HERE" && pwd -P)" ]]; then
    log "build folder was configured for $prev: reconfiguring for $HERE"
    rm -rf "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR/CMakeFiles"
  fi
fi
CFG=(-S "$HERE" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${ONNXRUNTIME_ROOT:-}" ]]; then CFG+=("-DONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT"); fi
if [[ -n "$NLOHMANN_JSON_ROOT" ]]; then CFG+=("-DCMAKE_PREFIX_PATH=$NLOHMANN_JSON_ROOT" "-DNLOHMANN_JSON_ROOT=$NLOHMANN_JSON_ROOT"); fi
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null; then CFG+=(-G Ninja); fi
# shellcheck disable=SC2206
CFG+=(${CMAKE_ARGS:-})

mkdir -p "$BUILD_DIR"
log "configure: cmake ${CFG[*]}"
cmake "${CFG[@]}" >"$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log" >&2; exit 1; }
grep -E "^-- (ONNX Runtime|nlohmann)" "$BUILD_DIR/configure.log" >&2 || true
log "build: $BUILD_DIR"
cmake --build "$BUILD_DIR" --parallel "${JOBS:-$(nproc 2>/dev/null || echo 2)}" >&2

for b in embedperf-ort-cpp embedperf-null-cpp; do
  if [[ -x "$BUILD_DIR/$b" ]]; then echo "$BUILD_DIR/$b"; else log "missing: $b"; fi
done
