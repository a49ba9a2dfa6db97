#!/usr/bin/env bash
# CUDA check of embedperf-ort-cpp on a GPU machine without network, run from the
# repository root. Needs native/cpp/build/device/ prepared on a networked machine:
#   deps/onnxruntime-headers-<ver>/, deps/nlohmann_json-<ver>/  (from ~/.cache/embedperf/deps)
#   e2e/model.onnx, e2e/w_*.safetensors                       (from tests/e2e_check.py's work dir)
# e.g.  D=native/cpp/build/device; mkdir -p $D/deps $D/e2e
#       cp -a ~/.cache/embedperf/deps/{onnxruntime-headers-*,nlohmann_json-*} $D/deps/
#       cp /tmp/embedperf-cpp-e2e/{model.onnx,w_*.safetensors} $D/e2e/
# then run it there carrying native/cpp/build/device (native/cpp/build/ is git-ignored).
# Uses the machine's own python3 onnxruntime wheel as the library. Builds with
# build.sh, runs the same request on cpu and on cuda, compares the embeddings.
set -uo pipefail
OUT=${OUT:-/tmp/cuda-cpp-check}
mkdir -p "$OUT"
D=native/cpp/build/device
PY=${PYTHON:-$(command -v python3)}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
for t in cmake g++ ninja make; do echo "$t: $(command -v $t || echo MISSING)"; done
cmake --version | head -n1
"$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" || exit 1

export EMBEDPERF_DEPS=/tmp/epdeps XDG_CACHE_HOME=/tmp/epxdg PYTHON="$PY"
mkdir -p "$EMBEDPERF_DEPS" && cp -a "$D"/deps/* "$EMBEDPERF_DEPS"/
t0=$(date +%s)
BINS=$(BUILD_DIR=/tmp/epbuild JOBS=$(nproc) native/cpp/build.sh 2>"$OUT/build.log") || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 ))s"; echo "$BINS"
grep -E "^\[assemble\]|^-- (ONNX|nlohmann)|GoogleTest" "$OUT/build.log"
[[ -x /tmp/epbuild/embedperf_cpp_tests ]] && (cd /tmp/epbuild && ctest 2>&1 | tail -n 3)

# CUDA libraries of pip's nvidia-* packages (what onnxruntime.preload_dlls() would load)
NV=$("$PY" - <<'EOF'
import glob, os, site
dirs = []
for p in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += glob.glob(os.path.join(p, "nvidia", "*", "lib")) + glob.glob(os.path.join(p, "nvidia", "cu*", "lib"))
print(":".join(sorted(set(dirs))))
EOF
)
export LD_LIBRARY_PATH="${NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

W=/tmp/epwork; mkdir -p "$W"; cp "$D"/e2e/* "$W"/
"$PY" - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
shapes = [(2, 8), (3, 16), (1, 5), (4, 33)]
for dev in ("cpu", "cuda", "cuda:0"):
    tag = dev.replace(":", "")
    req = {"protocol": 1, "runtime": "onnxruntime-cpp",
           "model": {"name": "tiny", "family": "bert", "pooling": "mean", "normalize": True, "output_dim": 32, "truncate_dim": None},
           "artifact": {"format": "onnx", "path": f"{w}/model.onnx"},
           "shapes": [{"batch": b, "seq": s, "workload": f"{w}/w_{b}x{s}.safetensors", "embeddings": f"{w}/{tag}_{b}x{s}.safetensors"} for b, s in shapes],
           "device": dev, "precision": "fp32", "threads": {"intra_op": 4, "inter_op": 1},
           "timing": {"warmup": 3, "min_calls": 20, "min_seconds": 0.2, "max_seconds": 5},
           "onnxruntime": {"graph_optimization_level": "all", "execution_mode": "sequential", "enable_cpu_mem_arena": True, "allow_spinning": True}}
    open(f"{w}/{tag}.request.json", "w").write(json.dumps(req))
EOF
for tag in cpu cuda cuda0; do
  /tmp/epbuild/embedperf-ort-cpp --request "$W/$tag.request.json" --result "$W/$tag.result.json" 2>"$W/$tag.stderr"
  echo "$tag: exit $?"; tail -n 5 "$W/$tag.stderr"
done
cp "$W"/*.json "$W"/*.stderr "$OUT"/ 2>/dev/null
"$PY" - "$W" <<'EOF'
import json, struct, sys, statistics
w = sys.argv[1]
def emb(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])["sentence_embedding"]
    s, e = h["data_offsets"]; return h["shape"], struct.unpack(f"<{(e - s) // 4}f", b[8 + n + s:8 + n + e])
for tag in ("cpu", "cuda", "cuda0"):
    try:
        r = json.load(open(f"{w}/{tag}.result.json"))
    except Exception as e:
        print(tag, "no result", e); continue
    print(tag, "device", json.dumps(r["device"]), "error", r.get("error"))
    print("  framework", json.dumps(r["framework"]))
    print("  config", json.dumps(r.get("settings", {}).get("session_config_entries")))
    for s in r["shapes"]:
        line = f"  [{s['batch']},{s['seq']}] {s['status']} {s.get('error') or ''}"
        if s["status"] == "ok":
            line += f" n={len(s['samples_ns'])} median={statistics.median(s['samples_ns'])/1e3:.1f}us first={s['first_call_s']*1e3:.2f}ms"
            if tag != "cpu":
                shp, a = emb(s["embeddings"]); _, c = emb(s["embeddings"].replace(f"/{tag}_", "/cpu_"))
                line += f" max|cuda-cpu|={max(abs(x - y) for x, y in zip(a, c)):.2e}"
        print(line)
EOF
