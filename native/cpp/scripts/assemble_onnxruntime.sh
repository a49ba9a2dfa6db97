#!/usr/bin/env bash
# Assemble an ONNX Runtime "release folder" (include/ + lib/) and, if the system
# has none, nlohmann/json, without touching the system:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/embedperf/deps/
#     onnxruntime-<libversion>/lib/      libonnxruntime.so.1.x (+ providers) copied from
#                                        the onnxruntime Python wheel of $PYTHON,
#                                        with libonnxruntime.so and .so.1 symlinks
#     onnxruntime-<libversion>/include/  headers of Debian trixie's libonnxruntime-dev
#     onnxruntime-headers-<debver>/      those headers, cached (offline reuse)
#     nlohmann_json-<debver>/            Debian trixie's nlohmann-json3-dev (usr/ tree)
#
# Debian packages are fetched with `apt-get download` under a throwaway sources
# list, state and cache dir (deleted on exit), then unpacked with `dpkg-deb -x`.
# Nothing is installed; /etc/apt and /var/lib/apt are not written.
#
# Idempotent: when everything is present it only checks and prints.
# Human-readable progress goes to stderr; the last lines on stdout are
#   ONNXRUNTIME_ROOT=<dir>
#   NLOHMANN_JSON_ROOT=<dir or empty if the system has it>
# so callers can `eval "$(assemble_onnxruntime.sh)"`.
#
# Environment:
#   PYTHON          python whose onnxruntime wheel provides the library
#                   (default /work/main/.venv/bin/python)
#   EMBEDPERF_DEPS  deps dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/embedperf/deps)
#   DEBIAN_MIRROR   override the mirror (default: the host of /etc/apt sources)
#   DEBIAN_SUITE    default trixie
# Options:
#   --no-onnxruntime   only do nlohmann_json
#   --no-json          only do onnxruntime
set -euo pipefail

log() { echo "[assemble] $*" >&2; }
die() { echo "[assemble] ERROR: $*" >&2; exit 1; }

DO_ORT=1
DO_JSON=1
for a in "$@"; do
  case "$a" in
    --no-onnxruntime) DO_ORT=0 ;;
    --no-json) DO_JSON=0 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown option $a" ;;
  esac
done

PYTHON="${PYTHON:-/work/main/.venv/bin/python}"
DEPS="${EMBEDPERF_DEPS:-${XDG_CACHE_HOME:-$HOME/.cache}/embedperf/deps}"
SUITE="${DEBIAN_SUITE:-trixie}"
mkdir -p "$DEPS"

# ---------------------------------------------------------------- apt, throwaway
APT_TMP=""
cleanup() { if [[ -n "$APT_TMP" && -d "$APT_TMP" ]]; then rm -rf "$APT_TMP"; fi; }
trap cleanup EXIT

debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri=""
  # deb822 .sources files, then one-line sources.list entries; the first URI that
  # serves the main archive (not debian-security) wins.
  uri=$( { grep -hs '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | sed 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n';
           grep -hs '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
             | sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}'; } \
         | grep -E '/debian/?$' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

apt_setup() {
  [[ -n "$APT_TMP" ]] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: cannot fetch Debian headers. Set ONNXRUNTIME_ROOT to an official ONNX Runtime release folder (include/, lib/)."
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
  APT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/embedperf-apt.XXXXXX")
  mkdir -p "$APT_TMP/lists/partial" "$APT_TMP/cache/archives/partial" "$APT_TMP/dl"
  local mirror keyring opt=""
  mirror=$(debian_mirror)
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f "$keyring" ]] && opt="[signed-by=$keyring] "
  echo "deb ${opt}${mirror%/} $SUITE main" > "$APT_TMP/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$APT_TMP/sources.list"
            -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$APT_TMP/lists"
            -o "Dir::State::status=/dev/null"
            -o "Dir::Cache=$APT_TMP/cache"
            -o "APT::Sandbox::User=$(id -un)"
            -o "Debug::NoLocking=1")
  log "apt (throwaway dir $APT_TMP): $(cat "$APT_TMP/sources.list")"
  apt-get -q "${APT_OPTS[@]}" update >"$APT_TMP/update.log" 2>&1 \
    || { cat "$APT_TMP/update.log" >&2; die "apt-get update of $SUITE failed (network? keyring?)"; }
}

# apt_fetch <package> <destdir>: download the .deb and unpack it into destdir.
# Sets FETCHED_VER (not run in a subshell: APT_TMP and its cleanup stay here).
FETCHED_VER=""
apt_fetch() {
  local pkg="$1" dest="$2" deb ver
  apt_setup
  ( cd "$APT_TMP/dl" && apt-get -q "${APT_OPTS[@]}" download "$pkg" >&2 ) \
    || die "apt-get download $pkg failed"
  deb=$(ls "$APT_TMP/dl/${pkg}"_*.deb | head -n1)
  ver=$(dpkg-deb -f "$deb" Version)
  mkdir -p "$dest"
  dpkg-deb -x "$deb" "$dest"
  log "fetched $pkg $ver ($(basename "$deb")) -> $dest"
  FETCHED_VER="$ver"
}

header_api_version() {  # <include dir>
  sed -nE 's/^#define ORT_API_VERSION ([0-9]+).*/\1/p' "$1/onnxruntime_c_api.h" | head -n1
}

# ---------------------------------------------------------------- onnxruntime
ORT_ROOT=""
if [[ "$DO_ORT" == 1 ]]; then
  [[ -x "$PYTHON" ]] || die "python '$PYTHON' not found (set PYTHON to the venv python with the onnxruntime wheel, or set ONNXRUNTIME_ROOT)"
  # Ask python where the wheel is, without importing it (fast, and no side effects).
  read -r ORT_PKG ORT_VER < <("$PYTHON" - <<'EOF'
import importlib.util, importlib.metadata, sys
spec = importlib.util.find_spec("onnxruntime")
if spec is None or not spec.submodule_search_locations:
    sys.exit("onnxruntime is not installed in " + sys.executable)
ver = None
for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
    try:
        ver = importlib.metadata.version(dist); break
    except importlib.metadata.PackageNotFoundError:
        pass
print(list(spec.submodule_search_locations)[0], ver or "unknown")
EOF
) || die "could not locate onnxruntime with $PYTHON"
  CAPI="$ORT_PKG/capi"
  SRC_LIB=$(ls "$CAPI"/libonnxruntime.so.1.* 2>/dev/null | head -n1 || true)
  [[ -n "$SRC_LIB" ]] || die "no libonnxruntime.so.1.* in $CAPI"
  LIB_FILE=$(basename "$SRC_LIB")              # libonnxruntime.so.1.32.0
  LIB_VER=${LIB_FILE#libonnxruntime.so.}       # 1.32.0
  LIB_API=$(echo "$LIB_VER" | cut -d. -f2)     # 32 (ORT_API_VERSION == minor)
  [[ "$LIB_VER" == "$ORT_VER" ]] || log "note: wheel version $ORT_VER, library file $LIB_FILE"
  ORT_ROOT="$DEPS/onnxruntime-$LIB_VER"
  SRC_SHA=$(sha256sum "$SRC_LIB" | cut -d' ' -f1)

  # lib/
  if [[ -f "$ORT_ROOT/lib/$LIB_FILE" && -f "$ORT_ROOT/lib/.source-sha256" \
        && "$(cat "$ORT_ROOT/lib/.source-sha256")" == "$SRC_SHA" ]]; then
    log "lib: up to date ($ORT_ROOT/lib/$LIB_FILE, from $SRC_LIB)"
  else
    mkdir -p "$ORT_ROOT/lib"
    cp -f "$SRC_LIB" "$ORT_ROOT/lib/$LIB_FILE"
    # execution-provider plugins that ORT dlopens from its own directory
    for p in "$CAPI"/libonnxruntime_providers_*.so; do
      [[ -e "$p" ]] && cp -f "$p" "$ORT_ROOT/lib/"
    done
    echo "$SRC_SHA" > "$ORT_ROOT/lib/.source-sha256"
    log "lib: copied $SRC_LIB (+ providers) -> $ORT_ROOT/lib/"
  fi
  ln -sfn "$LIB_FILE" "$ORT_ROOT/lib/libonnxruntime.so.1"
  ln -sfn libonnxruntime.so.1 "$ORT_ROOT/lib/libonnxruntime.so"

  # include/
  if [[ -f "$ORT_ROOT/include/onnxruntime_cxx_api.h" ]]; then
    log "include: present ($ORT_ROOT/include, ORT_API_VERSION $(header_api_version "$ORT_ROOT/include"))"
  else
    HDR_CACHE=$(ls -d "$DEPS"/onnxruntime-headers-*/include 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -z "$HDR_CACHE" || ! -f "$HDR_CACHE/onnxruntime_cxx_api.h" ]]; then
      X="$(mktemp -d "$DEPS/.ort-hdr.XXXXXX")"
      apt_fetch libonnxruntime-dev "$X/pkg"; HVER="$FETCHED_VER"
      [[ -f "$X/pkg/usr/include/onnxruntime/onnxruntime_cxx_api.h" ]] \
        || die "libonnxruntime-dev $HVER has no usr/include/onnxruntime/onnxruntime_cxx_api.h"
      HDIR="$DEPS/onnxruntime-headers-${HVER%%[+~-]*}"
      rm -rf "$HDIR"; mkdir -p "$HDIR"
      cp -a "$X/pkg/usr/include/onnxruntime" "$HDIR/include"
      echo "libonnxruntime-dev $HVER ($SUITE)" > "$HDIR/PACKAGE"
      rm -rf "$X"
      HDR_CACHE="$HDIR/include"
    else
      log "include: reusing cached headers $HDR_CACHE ($(cat "$HDR_CACHE/../PACKAGE" 2>/dev/null))"
    fi
    HDR_API=$(header_api_version "$HDR_CACHE")
    [[ -n "$HDR_API" ]] || die "cannot read ORT_API_VERSION from $HDR_CACHE/onnxruntime_c_api.h"
    if (( HDR_API > LIB_API )); then
      die "headers ORT_API_VERSION $HDR_API are newer than the library ($LIB_VER, API $LIB_API): newer headers do not work against an older library. Use an onnxruntime wheel >= 1.$HDR_API, or set ONNXRUNTIME_ROOT to an official release."
    fi
    rm -rf "$ORT_ROOT/include.tmp"
    cp -a "$HDR_CACHE" "$ORT_ROOT/include.tmp"
    cp -f "$HDR_CACHE/../PACKAGE" "$ORT_ROOT/HEADERS_PACKAGE" 2>/dev/null || true
    mv "$ORT_ROOT/include.tmp" "$ORT_ROOT/include"
    log "include: headers API $HDR_API -> $ORT_ROOT/include"
  fi
  HDR_API=$(header_api_version "$ORT_ROOT/include")
  if (( HDR_API > LIB_API )); then
    die "$ORT_ROOT: headers ORT_API_VERSION $HDR_API > library API $LIB_API ($LIB_VER). Delete $ORT_ROOT/include and rerun."
  fi
  log "onnxruntime: library $LIB_VER (API $LIB_API), headers API $HDR_API: ok -> $ORT_ROOT"
fi

# ---------------------------------------------------------------- nlohmann_json
JSON_ROOT=""
system_json() {
  local d
  for d in /usr/share/cmake/nlohmann_json /usr/lib/cmake/nlohmann_json \
           /usr/lib/*/cmake/nlohmann_json /usr/local/share/cmake/nlohmann_json \
           /usr/local/lib/cmake/nlohmann_json /usr/local/lib/*/cmake/nlohmann_json; do
    [[ -f "$d/nlohmann_jsonConfig.cmake" ]] && { echo "$d"; return 0; }
  done
  return 1
}
if [[ "$DO_JSON" == 1 ]]; then
  if d=$(system_json); then
    log "nlohmann_json: system install ($d)"
  else
    JSON_ROOT=$(ls -d "$DEPS"/nlohmann_json-* 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -n "$JSON_ROOT" && -f "$JSON_ROOT/include/nlohmann/json.hpp" ]]; then
      log "nlohmann_json: present ($JSON_ROOT)"
    else
      X="$(mktemp -d "$DEPS/.json.XXXXXX")"
      apt_fetch nlohmann-json3-dev "$X/pkg"; JVER="$FETCHED_VER"
      JSON_ROOT="$DEPS/nlohmann_json-${JVER%%[+~-]*}"
      rm -rf "$JSON_ROOT"
      mv "$X/pkg/usr" "$JSON_ROOT"      # include/, share/cmake/nlohmann_json, ...
      rm -rf "$X"
      [[ -f "$JSON_ROOT/include/nlohmann/json.hpp" ]] || die "nlohmann-json3-dev unpacked without include/nlohmann/json.hpp"
      log "nlohmann_json: $JVER -> $JSON_ROOT"
    fi
  fi
fi

echo "ONNXRUNTIME_ROOT=$ORT_ROOT"
echo "NLOHMANN_JSON_ROOT=$JSON_ROOT"
