//! Contract tests of the protocol crate: request parsing, workload I/O, the
//! timing loop's stop rule, truncation, result JSON vs the schema.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use embedperf_protocol::*;
use serde_json::Value;

const SAMPLE_REQUEST: &str = r#"{
  "protocol": 1,
  "runtime": "onnxruntime-rust",
  "model": {"name": "bge-small", "family": "bert", "pooling": "cls", "normalize": true,
            "dense": ["dense.0.weight"], "output_dim": 384, "truncate_dim": 128},
  "artifact": {"format": "onnx", "path": "/models/bge/model.onnx", "sha256": "ab12", "attention": null},
  "shapes": [
    {"batch": 1, "seq": 16, "workload": "/w/1x16.safetensors", "embeddings": "/e/1x16.safetensors"},
    {"batch": 32, "seq": 512, "workload": "/w/32x512.safetensors", "embeddings": "/e/32x512.safetensors"}
  ],
  "device": "cuda:1",
  "precision": "fp32",
  "threads": {"intra_op": 8, "inter_op": 1},
  "timing": {"warmup": 5, "min_calls": 30, "min_seconds": 2.5, "max_seconds": 60, "max_calls": 20000},
  "onnxruntime": {"graph_optimization_level": "extended", "execution_mode": "parallel",
                  "enable_cpu_mem_arena": false, "allow_spinning": true},
  "fault": {"kind": "hang", "at_shape": 1}
}"#;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("embedperf-protocol-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn schema_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../src/embedperf/protocol").join(name)
}

#[test]
fn parses_sample_request() {
    let r = Request::from_json(SAMPLE_REQUEST).unwrap();
    assert_eq!(r.protocol, 1);
    assert_eq!(r.model.family, "bert");
    assert_eq!(r.model.output_dim, 384);
    assert_eq!(r.model.truncate_dim, Some(128));
    assert_eq!(r.model.dense.as_deref(), Some(&["dense.0.weight".to_string()][..]));
    assert_eq!(r.artifact.sha256.as_deref(), Some("ab12"));
    assert_eq!(r.shapes.len(), 2);
    assert_eq!((r.shapes[1].batch, r.shapes[1].seq), (32, 512));
    assert_eq!(r.threads, Threads { intra_op: 8, inter_op: 1 });
    assert_eq!(r.timing.min_seconds, 2.5);
    assert_eq!(r.timing.max_seconds, 60.0); // an integer in JSON is fine for a number
    assert_eq!(r.timing.max_calls, Some(20000));
    let o = r.onnxruntime.as_ref().unwrap();
    assert_eq!(o.graph_optimization_level.as_deref(), Some("extended"));
    assert_eq!(o.enable_cpu_mem_arena, Some(false));
    assert_eq!(r.fault, Some(Fault { kind: "hang".into(), at_shape: 1 }));
    assert!(r.is_cuda());
    assert_eq!(r.cuda_ordinal(), Some(1));

    // Minimal request: every optional member absent or null.
    let mut v: Value = serde_json::from_str(SAMPLE_REQUEST).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("onnxruntime");
    o.insert("fault".into(), Value::Null);
    o["model"].as_object_mut().unwrap().remove("dense");
    o["model"].as_object_mut().unwrap().remove("truncate_dim");
    o["artifact"].as_object_mut().unwrap().remove("sha256");
    o["artifact"].as_object_mut().unwrap().remove("attention");
    o["timing"].as_object_mut().unwrap().insert("max_calls".into(), Value::Null);
    o.insert("device".into(), "cpu".into());
    v["fault"] = Value::Null;
    let r = Request::from_json(&v.to_string()).unwrap();
    assert!(r.onnxruntime.is_none() && r.fault.is_none() && r.model.truncate_dim.is_none());
    assert_eq!(r.timing.max_calls, None);
    assert_eq!(r.cuda_ordinal(), None);
    // A fault without at_shape means shape 0; an empty onnxruntime object is fine.
    v["fault"] = serde_json::json!({"kind": "crash"});
    v["onnxruntime"] = serde_json::json!({});
    let r = Request::from_json(&v.to_string()).unwrap();
    assert_eq!(r.fault.unwrap().at_shape, 0);
    assert_eq!(r.onnxruntime, Some(OrtOptions::default()));

    // Wrong protocol version is refused.
    v["protocol"] = 2.into();
    assert!(Request::from_json(&v.to_string()).is_err());
}

#[test]
fn workload_round_trip() {
    let d = scratch("workload");
    let b = Batch::text(2, 3, vec![101, 7592, 102, 101, i64::MAX, -5], vec![1, 1, 1, 1, 1, 0], vec![3, 2]);
    let p = d.join("w.safetensors");
    write_workload(&p, &b).unwrap();
    assert_eq!(read_workload(&p, Some((2, 3))).unwrap(), b);
    assert_eq!(read_workload(&p, None).unwrap(), b);
    let err = read_workload(&p, Some((2, 4))).unwrap_err().to_string();
    assert!(err.contains("[2,3]"), "{err}");
    assert!(read_workload(d.join("missing.safetensors"), None).is_err());

    let e = Embeddings { rows: 2, dim: 3, data: vec![0.5, -1.0, 3.25, 0.0, f32::MIN_POSITIVE, 7.0] };
    let q = d.join("sub/e.safetensors");
    write_embeddings(&q, &e).unwrap();
    assert_eq!(read_embeddings(&q).unwrap(), e);
}

#[test]
fn truncate_and_normalize_hand_checked() {
    // [3,4,12] -> first 2 dims [3,4], norm 5 -> [0.6, 0.8]
    // [1,2,2] kept whole when dim >= width -> norm 3 -> [1/3, 2/3, 2/3] (checked below)
    // zero row stays zero (norm clamped to 1e-12).
    let mut e = Embeddings { rows: 3, dim: 3, data: vec![3.0, 4.0, 12.0, 0.0, 0.0, 5.0, -6.0, 8.0, 1.0] };
    truncate_and_normalize(&mut e, 2);
    assert_eq!((e.rows, e.dim, e.data.len()), (3, 2, 6));
    let want = [0.6, 0.8, 0.0, 0.0, -0.6, 0.8];
    for (g, w) in e.data.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{:?}", e.data);
    }
    let mut e = Embeddings { rows: 1, dim: 3, data: vec![1.0, 2.0, 2.0] };
    truncate_and_normalize(&mut e, 10);
    assert_eq!(e.dim, 3);
    for (g, w) in e.data.iter().zip([1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]) {
        assert!((g - w).abs() < 1e-7, "{:?}", e.data);
    }
}

// ------------------------------------------------------------ fake engine

/// Behaviour chosen by `request.runtime`: "slow:<ms>", "fail-load",
/// "unsupported" (refuses at load), "panic-at:<shape>", "alternate:<ms>"
/// (calls alternate between no sleep and a sleep of <ms>: a wide two-valued
/// sample), "count" (every value of a row is the call's number, 1-based,
/// warm-up included, so outputs tell calls apart).
struct Fake {
    sleep: Duration,
    alternate: bool,
    calls: usize,
    dim: usize,
    panic_at: Option<usize>,
    shape: usize,
    count: bool,
}

impl Engine for Fake {
    fn load(request: &Request) -> anyhow::Result<Self> {
        let rt = request.runtime.as_str();
        anyhow::ensure!(rt != "fail-load", "cannot load: on purpose");
        if rt == "unsupported" {
            return Err(Unsupported::new(format!("precision {} is not run natively here", request.precision)).into());
        }
        let alternate = rt.starts_with("alternate:");
        let ms = rt.strip_prefix("slow:").or(rt.strip_prefix("alternate:")).map_or(0, |m| m.parse().unwrap());
        let panic_at = rt.strip_prefix("panic-at:").map(|m| m.parse().unwrap());
        Ok(Fake {
            sleep: Duration::from_millis(ms),
            alternate,
            calls: 0,
            dim: request.model.output_dim,
            panic_at,
            shape: 0,
            count: rt == "count",
        })
    }
    fn begin_shape(&mut self, index: usize, _spec: &ShapeSpec) -> anyhow::Result<()> {
        self.shape = index;
        Ok(())
    }
    fn embed(&mut self, batch: &Batch) -> anyhow::Result<Embeddings> {
        if self.panic_at == Some(self.shape) {
            panic!("engine exploded");
        }
        self.calls += 1;
        if !self.alternate || self.calls % 2 == 0 {
            std::thread::sleep(self.sleep);
        }
        // Row i = [1, 2, ..., dim] * x, x = the row's first input id (text) or
        // first pixel value (image): after truncation to 2 -> [1,2]/sqrt(5).
        let mut data = Vec::with_capacity(batch.batch * self.dim);
        for i in 0..batch.batch {
            let x = match batch.image {
                Some([c, h, w]) => batch.pixel_values[i * c * h * w],
                None => batch.input_ids[i * batch.seq] as f32,
            };
            if self.count {
                data.extend(std::iter::repeat_n(self.calls as f32, self.dim));
            } else {
                data.extend((1..=self.dim).map(|k| k as f32 * x));
            }
        }
        Ok(Embeddings { rows: batch.batch, dim: self.dim, data })
    }
    fn framework(&self) -> Framework {
        Framework::new("fake", Some("0.0".into())).with("binding", "test")
    }
    fn device(&self) -> DeviceInfo {
        DeviceInfo { requested: "cpu".into(), used: "cpu".into(), provider: None }
    }
    fn settings(&self) -> Value {
        serde_json::json!({"sleep_ms": self.sleep.as_millis() as u64})
    }
}

fn fake_request(d: &Path, runtime: &str, timing: Timing, shapes: &[(usize, usize)], truncate: Option<usize>) -> PathBuf {
    let mut specs = Vec::new();
    for &(b, s) in shapes {
        let w = d.join(format!("w{b}x{s}.safetensors"));
        write_workload(&w, &Batch::text(b, s, vec![1; b * s], vec![1; b * s], vec![s as i64; b])).unwrap();
        specs.push(ShapeSpec {
            batch: b,
            seq: s,
            workload: w.display().to_string(),
            embeddings: d.join(format!("e{b}x{s}.safetensors")).display().to_string(),
            scenario: None,
            first_embeddings: None,
        });
    }
    write_request(d, runtime, timing, specs, truncate, None)
}

fn write_request(
    d: &Path,
    runtime: &str,
    timing: Timing,
    specs: Vec<ShapeSpec>,
    truncate: Option<usize>,
    modality: Option<&str>,
) -> PathBuf {
    let req = Request {
        protocol: 1,
        runtime: runtime.into(),
        model: ModelInfo {
            name: "fake".into(),
            family: "bert".into(),
            pooling: "mean".into(),
            normalize: true,
            dense: None,
            output_dim: 4,
            truncate_dim: truncate,
            modality: modality.map(String::from),
            outputs: None,
            unused_token_ids: None,
        },
        artifact: Artifact { format: "none".into(), path: String::new(), sha256: None, attention: None, precision: None },
        shapes: specs,
        device: "cpu".into(),
        precision: "fp32".into(),
        threads: Threads { intra_op: 1, inter_op: 1 },
        timing,
        onnxruntime: None,
        fault: None,
    };
    let p = d.join("request.json");
    std::fs::write(&p, serde_json::to_string_pretty(&req).unwrap()).unwrap();
    p
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn stop_rule_time_cap_with_slow_engine() {
    let d = scratch("timecap");
    // 20 ms per call, 1000 calls wanted, 0.2 s cap -> stops at the cap after ~10 calls.
    let t = Timing { warmup: 2, min_calls: 1000, min_seconds: 0.0, max_seconds: 0.2, max_calls: None, target_ci: None };
    let rq = fake_request(&d, "slow:20", t, &[(2, 4)], None);
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    let s = &r["shapes"][0];
    assert_eq!(s["status"], "ok");
    assert_eq!(s["stop_rule"], "time_cap");
    let n = s["samples_ns"].as_array().unwrap().len();
    assert!((5..=11).contains(&n), "{n} calls");
    assert!(s["loop_s"].as_f64().unwrap() >= 0.2);
    assert!(s["samples_ns"].as_array().unwrap().iter().all(|x| x.as_u64().unwrap() >= 20_000_000));
    assert_eq!(s["warmup_ns"].as_array().unwrap().len(), 2);
    let first = s["first_call_s"].as_f64().unwrap();
    assert!(first >= 0.02 && (first * 1e9).round() as u64 == s["warmup_ns"][0].as_u64().unwrap());
}

#[test]
fn stop_rule_min_reached_with_slow_engine() {
    let d = scratch("minreached");
    // 5 ms per call: min 3 calls and 0.1 s -> ~20 calls, well before the 10 s cap.
    let t = Timing { warmup: 0, min_calls: 3, min_seconds: 0.1, max_seconds: 10.0, max_calls: None, target_ci: None };
    let rq = fake_request(&d, "slow:5", t, &[(1, 2), (3, 2)], Some(2));
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    for s in r["shapes"].as_array().unwrap() {
        assert_eq!(s["stop_rule"], "min_reached");
        let n = s["samples_ns"].as_array().unwrap().len();
        assert!((3..100).contains(&n), "{n}");
        let loop_s = s["loop_s"].as_f64().unwrap();
        assert!((0.1..2.0).contains(&loop_s), "{loop_s}");
        // warmup 0: first_call_s is the first timed call.
        assert!(s["warmup_ns"].as_array().unwrap().is_empty());
        assert_eq!((s["first_call_s"].as_f64().unwrap() * 1e9).round() as u64, s["samples_ns"][0].as_u64().unwrap());
    }
    // Also: min_calls dominates when min_seconds is 0.
    let t = Timing { warmup: 1, min_calls: 7, min_seconds: 0.0, max_seconds: 10.0, max_calls: None, target_ci: None };
    let rq = fake_request(&d, "slow:1", t, &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    assert_eq!(r["shapes"][0]["samples_ns"].as_array().unwrap().len(), 7);
    assert_eq!(r["shapes"][0]["stop_rule"], "min_reached");

    // max_calls: the loop stops after that many calls (call_cap) before min_seconds.
    let t = Timing { warmup: 0, min_calls: 1, min_seconds: 5.0, max_seconds: 10.0, max_calls: Some(4), target_ci: None };
    let d2 = scratch("callcap");
    let rq2 = fake_request(&d2, "slow:0", t, &[(1, 2)], None);
    let rs2 = d2.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq2, &rs2), ExitCode::SUCCESS);
    let r = read_json(&rs2);
    assert_eq!(r["shapes"][0]["stop_rule"], "call_cap");
    assert_eq!(r["shapes"][0]["samples_ns"].as_array().unwrap().len(), 4);

    // Truncation happened inside the calls: rows are [1,2]/sqrt(5) (row scale drops out).
    let e = read_embeddings(d.join("e3x2.safetensors")).unwrap();
    assert_eq!((e.rows, e.dim), (3, 2));
    let (a, b) = (1.0 / 5f32.sqrt(), 2.0 / 5f32.sqrt());
    for r in 0..3 {
        assert!((e.row(r)[0] - a).abs() < 1e-6 && (e.row(r)[1] - b).abs() < 1e-6, "{:?}", e.data);
    }
}

/// Every "required" member of `schema` (recursing into properties, items) is present in `v`,
/// and `const`/`enum` constraints hold — a small structural check without a validator crate.
fn check_required(schema: &Value, v: &Value, at: &str) {
    if let Some(c) = schema.get("const") {
        assert_eq!(v, c, "{at}: const");
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(v), "{at}: {v} not in {e:?}");
    }
    if let (Some(obj), Some(req)) = (v.as_object(), schema.get("required").and_then(Value::as_array)) {
        for k in req {
            assert!(obj.contains_key(k.as_str().unwrap()), "{at}: missing required {k}");
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema.get("properties").and_then(Value::as_object)) {
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                check_required(sub, x, &format!("{at}.{k}"));
            }
        }
    }
    if let (Some(arr), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in arr.iter().enumerate() {
            check_required(items, x, &format!("{at}[{i}]"));
        }
    }
    // Declared types (a subset: the ones our values take).
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        });
        assert!(ok, "{at}: {v} is not {types:?}");
    }
}

#[test]
fn result_json_has_schema_required_fields() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path("result.schema.json")).unwrap()).unwrap();
    let d = scratch("schema");
    let t = Timing { warmup: 1, min_calls: 2, min_seconds: 0.0, max_seconds: 1.0, max_calls: None, target_ci: None };
    // Shape 1 panics inside the engine: that shape fails, the others go on.
    let rq = fake_request(&d, "panic-at:1", t, &[(1, 2), (2, 2), (3, 2)], None);
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    assert_eq!(r["runner"]["language"], "rust");
    assert_eq!(r["framework"]["binding"], "test"); // extras are flattened
    assert_eq!(r["settings"]["sleep_ms"], 0);
    for s in r["shapes"].as_array().unwrap() {
        assert_eq!(s["scenario"], "latency");
        assert!(s["target_ci"].is_null() && s["ci_checks"].is_null());
    }
    let st: Vec<&str> = r["shapes"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(st, ["ok", "failed", "ok"]);
    assert!(r["shapes"][1]["error"].as_str().unwrap().contains("engine exploded"));
    assert!(r["peak_rss_mb"].as_f64().unwrap() > 0.0);
    assert!(r["shapes"][0]["loop_peak_rss_mb"].is_number() || r["shapes"][0]["loop_peak_rss_mb"].is_null());
    // No temp file left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty());

    // Load failure: error {kind, message}, exit 1, still schema-valid.
    let rq = fake_request(&d, "fail-load", t, &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::from(1));
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    assert_eq!(r["error"]["kind"], "load");
    assert!(r["error"]["message"].as_str().unwrap().contains("on purpose"));
    assert!(r["shapes"].as_array().unwrap().is_empty());

    // A refusal: error kind "unsupported" with its one-line reason, exit 1.
    let rq = fake_request(&d, "unsupported", t, &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::from(1));
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    assert_eq!(r["error"], serde_json::json!({"kind": "unsupported", "message": "precision fp32 is not run natively here"}));
    assert!(r["shapes"].as_array().unwrap().is_empty());

    // Another protocol version: error kind "protocol", exit 1.
    let mut v = read_json(&rq);
    v["protocol"] = 2.into();
    std::fs::write(&rq, v.to_string()).unwrap();
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::from(1));
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    assert_eq!(r["error"]["kind"], "protocol");

    // Unreadable request: exit 1 with an error result.
    std::fs::write(&rq, "{not json").unwrap();
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::from(1));
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    assert_eq!(r["error"]["kind"], "request");
}

#[test]
fn memory_readings() {
    assert_eq!(memory::parse_status_kib("Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t 1 kB\n", "VmHWM:"), Some(20480));
    let hwm = memory::vm_hwm_mib().expect("/proc/self/status");
    assert!(hwm > 0.0);
    // Touch 64 MiB, drop it, reset: the peak comes back down near the current RSS.
    let v = vec![1u8; 64 << 20];
    std::hint::black_box(&v);
    drop(v);
    let before = memory::vm_hwm_mib().unwrap();
    if memory::reset_hwm() {
        let after = memory::vm_hwm_mib().unwrap();
        assert!(after <= before, "{after} > {before}");
    }
    // Without a reset the reading is the process peak, not the loop's: null.
    assert_eq!(memory::loop_peak(false, Some(12.0)), (None, "not measured: clear_refs not writable"));
    assert_eq!(memory::loop_peak(true, None), (None, "not measured: VmHWM not readable"));
    assert_eq!(memory::loop_peak(true, Some(12.0)), (Some(12.0), "VmHWM after clear_refs reset before the loop"));
}

// ------------------------------------------------ additions: towers, CI, throughput

fn spec(d: &Path, name: &str, batch: usize, seq: usize, scenario: Option<&str>) -> ShapeSpec {
    ShapeSpec {
        batch,
        seq,
        workload: d.join(format!("{name}.w.safetensors")).display().to_string(),
        embeddings: d.join(format!("{name}.e.safetensors")).display().to_string(),
        scenario: scenario.map(String::from),
        first_embeddings: None,
    }
}

fn timing(warmup: usize, min_calls: usize, min_seconds: f64, max_seconds: f64) -> Timing {
    Timing { warmup, min_calls, min_seconds, max_seconds, max_calls: None, target_ci: None }
}

#[test]
fn parses_new_request_members() {
    let mut v: Value = serde_json::from_str(SAMPLE_REQUEST).unwrap();
    v["model"]["family"] = "siglip".into();
    v["model"]["pooling"] = "tower".into();
    v["model"]["modality"] = "image".into();
    v["timing"]["target_ci"] = 0.01.into();
    v["shapes"][0]["scenario"] = "throughput".into();
    v["shapes"][1]["scenario"] = "latency".into();
    let r = Request::from_json(&v.to_string()).unwrap();
    assert_eq!((r.model.family.as_str(), r.model.pooling.as_str()), ("siglip", "tower"));
    assert!(r.model.is_image());
    assert_eq!(r.timing.target_ci, Some(0.01));
    assert!(r.shapes[0].is_throughput() && !r.shapes[1].is_throughput());
    assert_eq!(r.shapes[1].scenario(), "latency");
    // Serialises back to the same members.
    let back: Value = serde_json::to_value(&r).unwrap();
    assert_eq!(back["model"]["modality"], "image");
    assert_eq!(back["timing"]["target_ci"], 0.01);
    assert_eq!(back["shapes"][0]["scenario"], "throughput");

    // Defaults: text tower, latency, no target_ci (absent or null).
    v["model"].as_object_mut().unwrap().remove("modality");
    v["timing"]["target_ci"] = Value::Null;
    v["shapes"][0].as_object_mut().unwrap().remove("scenario");
    let r = Request::from_json(&v.to_string()).unwrap();
    assert!(!r.model.is_image() && r.model.modality.is_none());
    assert_eq!(r.timing.target_ci, None);
    assert_eq!(r.shapes[0].scenario(), "latency");
    v["model"]["modality"] = "text".into();
    assert!(!Request::from_json(&v.to_string()).unwrap().model.is_image());
}

#[test]
fn unknown_request_members_are_rejected() {
    let base: Value = serde_json::from_str(SAMPLE_REQUEST).unwrap();
    assert!(Request::from_json(&base.to_string()).is_ok());
    for pointer in ["", "/model", "/artifact", "/shapes/0", "/threads", "/timing", "/onnxruntime", "/fault"] {
        let mut v = base.clone();
        v.pointer_mut(pointer).unwrap().as_object_mut().unwrap().insert("bogus".into(), 1.into());
        let err = Request::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{pointer}: {err}");
    }
    // Through the harness: error kind "request", exit 1.
    let d = scratch("unknown");
    let rq = fake_request(&d, "slow:0", timing(0, 1, 0.0, 1.0), &[(1, 2)], None);
    let mut v = read_json(&rq);
    v["timing"]["target_cl"] = 0.01.into(); // a typo must not silently disable the rule
    std::fs::write(&rq, v.to_string()).unwrap();
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::from(1));
    let r = read_json(&rs);
    assert_eq!(r["error"]["kind"], "request");
    assert!(r["error"]["message"].as_str().unwrap().contains("target_cl"));
}

#[test]
fn image_workload_round_trip() {
    let d = scratch("image");
    let (b, chw) = (2, [3, 4, 5]);
    let px: Vec<f32> = (0..b * 60).map(|i| i as f32 * 0.25 - 7.0).collect();
    let w = Batch::image(b, chw, px.clone());
    assert_eq!((w.batch, w.seq, w.pixel_shape()), (2, 4, Some([2, 3, 4, 5])));
    assert!(w.input_ids.is_empty() && w.attention_mask.is_empty() && w.lengths.is_empty());
    let p = d.join("img.safetensors");
    write_workload(&p, &w).unwrap();
    let got = read_workload(&p, Some((2, 4))).unwrap();
    assert_eq!(got, w);
    assert!(got.is_image());
    assert_eq!(got.pixel_values, px);
    // The request's seq is the image side H (4 here, not W = 5).
    let err = read_workload(&p, Some((2, 5))).unwrap_err().to_string();
    assert!(err.contains("[2,3,4,5]") && err.contains("image side 5"), "{err}");
    assert!(read_workload(&p, Some((1, 4))).is_err());
    // A text batch carries no pixels.
    let t = Batch::text(1, 2, vec![1, 2], vec![1, 1], vec![2]);
    assert!(!t.is_image() && t.pixel_values.is_empty() && t.pixel_shape().is_none());
    // Wrong pixel count is refused on write.
    assert!(write_workload(d.join("bad.safetensors"), &Batch::image(1, [3, 2, 2], vec![0.0; 11])).is_err());
}

fn corpus_batches() -> Vec<Batch> {
    // K = 3 batches of 2, 3, 1 rows; the first id of fed row r is 10 + r.
    vec![
        Batch::text(2, 3, vec![10, 5, 0, 11, 0, 0], vec![1, 1, 0, 1, 0, 0], vec![2, 1]),
        Batch::text(3, 2, vec![12, 1, 13, 1, 14, 0], vec![1, 1, 1, 1, 1, 0], vec![2, 2, 1]),
        Batch::text(1, 4, vec![15, 1, 1, 1], vec![1, 1, 1, 1], vec![4]),
    ]
}

#[test]
fn corpus_read() {
    let d = scratch("corpus");
    let p = d.join("c.safetensors");
    let batches = corpus_batches();
    write_corpus(&p, &batches, Some(&[5, 0, 3, 1, 4, 2])).unwrap();
    let got = read_corpus(&p).unwrap();
    // Lengths are derived from the masks.
    assert_eq!(got, batches);
    assert_eq!(got.iter().map(|b| (b.batch, b.seq)).collect::<Vec<_>>(), [(2, 3), (3, 2), (1, 4)]);

    // The tensors by name, as the contract spells them.
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(
        names,
        ["attention_mask.0", "attention_mask.1", "attention_mask.2", "batches", "input_ids.0", "input_ids.1", "input_ids.2", "order"]
    );
    assert_eq!(st.tensor("batches").unwrap().shape(), [3, 2]);
    assert_eq!(st.tensor("order").unwrap().shape(), [6]);

    // order must have one entry per row; a plain workload is not a corpus.
    assert!(write_corpus(d.join("x.safetensors"), &batches, Some(&[0, 1])).is_err());
    let bad = d.join("bad.safetensors");
    let table: Vec<u8> = [2i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let ids: Vec<u8> = [1i64, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let order: Vec<u8> = [0i64].iter().flat_map(|x| x.to_le_bytes()).collect();
    use safetensors::tensor::{Dtype, TensorView};
    safetensors::tensor::serialize_to_file(
        vec![
            ("batches", TensorView::new(Dtype::I64, vec![1, 2], &table).unwrap()),
            ("input_ids.0", TensorView::new(Dtype::I64, vec![2, 1], &ids).unwrap()),
            ("attention_mask.0", TensorView::new(Dtype::I64, vec![2, 1], &ids).unwrap()),
            ("order", TensorView::new(Dtype::I64, vec![1], &order).unwrap()),
        ],
        None,
        &bad,
    )
    .unwrap();
    let err = read_corpus(&bad).unwrap_err().to_string();
    assert!(err.contains("order"), "{err}");
    let plain = d.join("plain.safetensors");
    write_workload(&plain, &batches[0]).unwrap();
    assert!(read_corpus(&plain).unwrap_err().to_string().contains("batches"));
}

#[test]
fn ci_reached_with_steady_calls() {
    let d = scratch("ci-steady");
    // 3 ms per call, steady to far better than ±25 %: the first check (n = 10)
    // already stops the loop.
    let mut t = timing(1, 1, 0.0, 30.0);
    t.target_ci = Some(0.25);
    let rq = fake_request(&d, "slow:3", t, &[(2, 4)], None);
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    let s = &r["shapes"][0];
    assert_eq!(s["stop_rule"], "ci_reached", "{s}");
    assert_eq!(s["target_ci"], 0.25);
    assert_eq!(s["scenario"], "latency");
    let n = s["samples_ns"].as_array().unwrap().len();
    let checks = s["ci_checks"].as_u64().unwrap() as usize;
    // Stopped at a check point: the checks-th of 10, 11, 13, 15, ...
    let mut at = bootstrap::first_check(1);
    for _ in 1..checks {
        at = bootstrap::next_check_after(at);
    }
    assert_eq!(n, at, "{checks} checks");
    assert!(checks <= 6, "{checks} checks");

    // min_seconds gates the first check: none before 0.1 s, then one at once.
    let mut t = timing(0, 1, 0.1, 30.0);
    t.target_ci = Some(0.25);
    let rq = fake_request(&d, "slow:3", t, &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "ci_reached");
    assert!(s["loop_s"].as_f64().unwrap() >= 0.1);
    let n = s["samples_ns"].as_array().unwrap().len();
    assert!(n > 10 && n < 80, "{n}"); // ~33 calls fit in 0.1 s
}

#[test]
fn ci_never_reached_with_a_wide_sample() {
    let d = scratch("ci-wide");
    // Calls alternate between ~0 and 3 ms: the CI spans both, so the rule goes
    // on to call_cap. The checks run at 10, 11, 13, 15, 17, 19, 21, 24, 27, 30.
    let mut t = timing(0, 5, 0.0, 60.0);
    t.target_ci = Some(0.5);
    t.max_calls = Some(30);
    let rq = fake_request(&d, "alternate:3", t, &[(1, 2)], None);
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "call_cap");
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 30);
    assert_eq!(s["ci_checks"], 10);
    assert_eq!(s["target_ci"], 0.5);

    // ... or to the time cap.
    let mut t = timing(0, 1, 0.0, 0.15);
    t.target_ci = Some(0.5);
    let rq = fake_request(&d, "alternate:3", t, &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "time_cap");
    assert!(s["ci_checks"].as_u64().unwrap() >= 2);

    // Without target_ci: plain min_reached, no checks recorded.
    let rq = fake_request(&d, "alternate:3", timing(0, 12, 0.0, 60.0), &[(1, 2)], None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "min_reached");
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 12);
    assert!(s["ci_checks"].is_null() && s["target_ci"].is_null());
    assert_eq!(s["scenario"], "latency");
    assert!(s.get("passes_ns").is_none());
}

fn throughput_request(d: &Path, runtime: &str, t: Timing, truncate: Option<usize>) -> PathBuf {
    let sp = spec(d, "corpus", 3, 4, Some("throughput"));
    write_corpus(&sp.workload, &corpus_batches(), None).unwrap();
    write_request(d, runtime, t, vec![sp], truncate, None)
}

#[test]
fn throughput_full_passes() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path("result.schema.json")).unwrap()).unwrap();
    let d = scratch("throughput");
    // 2 ms per call, K = 3: min_seconds 0.05 is reached after a few passes.
    let t = timing(4, 1000, 0.05, 30.0);
    let rq = throughput_request(&d, "slow:2", t, None);
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    check_required(&schema, &r, "result");
    let s = &r["shapes"][0];
    assert_eq!(s["status"], "ok", "{s}");
    assert_eq!(s["scenario"], "throughput");
    assert_eq!(s["stop_rule"], "min_reached");
    assert_eq!((s["batch"].as_u64(), s["seq"].as_u64()), (Some(3), Some(4)));
    assert_eq!(s["items"], 6);
    let passes = s["passes_ns"].as_array().unwrap();
    let samples = s["samples_ns"].as_array().unwrap();
    assert!(passes.len() >= 2, "{} passes", passes.len());
    assert_eq!(samples.len(), passes.len() * 3);
    // A pass's wall time covers its three calls.
    for (p, calls) in passes.iter().zip(samples.chunks(3)) {
        let sum: u64 = calls.iter().map(|x| x.as_u64().unwrap()).sum();
        assert!(p.as_u64().unwrap() >= sum);
    }
    assert_eq!(s["warmup_ns"].as_array().unwrap().len(), 4);
    assert!(s["ci_checks"].is_null() && s["target_ci"].is_null());
    assert!(s["loop_s"].as_f64().unwrap() >= 0.05);
    // Embeddings: the 6 rows of the last pass in feed order (row r = [1..4]·(10+r)).
    let e = read_embeddings(d.join("corpus.e.safetensors")).unwrap();
    assert_eq!((e.rows, e.dim), (6, 4));
    for r in 0..6 {
        let x = 10.0 + r as f32;
        assert_eq!(e.row(r), [x, 2.0 * x, 3.0 * x, 4.0 * x], "row {r}");
    }

    // target_ci and min_calls do not apply; truncation does.
    let mut t = timing(0, 1_000_000, 0.0, 30.0);
    t.target_ci = Some(0.5);
    let rq = throughput_request(&d, "slow:0", t, Some(2));
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "min_reached");
    assert_eq!(s["passes_ns"].as_array().unwrap().len(), 1);
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 3);
    assert!(s["ci_checks"].is_null());
    let e = read_embeddings(d.join("corpus.e.safetensors")).unwrap();
    assert_eq!((e.rows, e.dim), (6, 2));
}

#[test]
fn throughput_caps() {
    let d = scratch("throughput-caps");
    let rs = d.join("result.json");
    // The time cap waits for the first full pass even when it is long past.
    let t = timing(0, 1, 100.0, 0.001);
    let rq = throughput_request(&d, "slow:5", t, None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "time_cap");
    assert_eq!(s["passes_ns"].as_array().unwrap().len(), 1);
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 3);
    assert_eq!(read_embeddings(d.join("corpus.e.safetensors")).unwrap().rows, 6);

    // Later, the cap stops mid-pass: whole passes only are kept.
    let t = timing(0, 1, 100.0, 0.05);
    let rq = throughput_request(&d, "slow:4", t, None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "time_cap");
    let p = s["passes_ns"].as_array().unwrap().len();
    assert!(p >= 2, "{p}");
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 3 * p);
    assert!(s["loop_s"].as_f64().unwrap() >= 0.05);
    let e = read_embeddings(d.join("corpus.e.safetensors")).unwrap();
    assert_eq!(e.rows, 6);
    assert_eq!(e.row(5)[0], 15.0);

    // max_calls is checked at the end of each pass.
    let mut t = timing(0, 1, 100.0, 100.0);
    t.max_calls = Some(4);
    let rq = throughput_request(&d, "slow:0", t, None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["stop_rule"], "call_cap");
    assert_eq!(s["passes_ns"].as_array().unwrap().len(), 2);
    assert_eq!(s["samples_ns"].as_array().unwrap().len(), 6);

    // A throughput shape whose workload is not a corpus fails, naming `batches`.
    let sp = spec(&d, "notcorpus", 2, 3, Some("throughput"));
    write_workload(&sp.workload, &corpus_batches()[0]).unwrap();
    let rq = write_request(&d, "slow:0", timing(0, 1, 0.0, 1.0), vec![sp], None, None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["status"], "failed");
    assert_eq!(s["scenario"], "throughput");
    assert!(s["error"].as_str().unwrap().contains("batches"), "{s}");
}

#[test]
fn image_shapes_through_the_harness() {
    let d = scratch("image-harness");
    let rs = d.join("result.json");
    let sp = spec(&d, "img", 2, 4, None);
    let px: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| if i % 48 == 0 { 1.0 + (i / 48) as f32 } else { 0.5 }).collect();
    write_workload(&sp.workload, &Batch::image(2, [3, 4, 4], px)).unwrap();
    let rq = write_request(&d, "slow:0", timing(1, 3, 0.0, 5.0), vec![sp.clone()], None, Some("image"));
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["status"], "ok", "{s}");
    assert_eq!((s["batch"].as_u64(), s["seq"].as_u64()), (Some(2), Some(4)));
    let e = read_embeddings(&sp.embeddings).unwrap();
    assert_eq!((e.rows, e.dim), (2, 4));
    assert_eq!((e.row(0)[0], e.row(1)[0]), (1.0, 2.0));

    // The workload must match the tower: an image workload for a text model
    // (and a text workload for an image model) fails that shape.
    let rq = write_request(&d, "slow:0", timing(0, 1, 0.0, 5.0), vec![sp.clone()], None, None);
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains("pixel_values"), "{s}");
    let tp = spec(&d, "txt", 1, 2, None);
    write_workload(&tp.workload, &Batch::text(1, 2, vec![1, 2], vec![1, 1], vec![2])).unwrap();
    let rq = write_request(&d, "slow:0", timing(0, 1, 0.0, 5.0), vec![tp], None, Some("image"));
    assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let s = &read_json(&rs)["shapes"][0];
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains("no pixel_values"), "{s}");
}

#[test]
fn null_rust_runs_image_and_corpus_workloads() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path("result.schema.json")).unwrap()).unwrap();
    let d = scratch("null-rust");
    let img = spec(&d, "img", 2, 8, None);
    write_workload(&img.workload, &Batch::image(2, [3, 8, 8], vec![0.5; 2 * 3 * 64])).unwrap();
    let cor = spec(&d, "cor", 3, 4, Some("throughput"));
    write_corpus(&cor.workload, &corpus_batches(), None).unwrap();
    let txt = spec(&d, "txt", 2, 3, None);
    write_workload(&txt.workload, &corpus_batches()[0]).unwrap();
    let mut t = timing(2, 10, 0.0, 5.0);
    t.max_calls = Some(1000);
    t.target_ci = Some(0.5);
    let bin = env!("CARGO_BIN_EXE_embedperf-null-rust");
    for (name, specs, modality) in [("img", vec![img], Some("image")), ("text", vec![txt, cor], None)] {
        let rq = write_request(&d, "null-rust", t, specs, None, modality);
        let rs = d.join(format!("{name}.result.json"));
        let st = std::process::Command::new(bin).arg("--request").arg(&rq).arg("--result").arg(&rs).status().unwrap();
        assert!(st.success(), "{name}: {st}");
        let r = read_json(&rs);
        check_required(&schema, &r, name);
        for s in r["shapes"].as_array().unwrap() {
            assert_eq!(s["status"], "ok", "{s}");
            let rows = if s["scenario"] == "throughput" { 6 } else { s["batch"].as_u64().unwrap() as usize };
            let e = read_embeddings(s["embeddings"].as_str().unwrap()).unwrap();
            assert_eq!((e.rows, e.dim), (rows, 4));
            assert!(e.data.iter().all(|&x| x == 0.0));
        }
    }
}

// ------------------------------------------------ first_embeddings, accuracy, new request members

fn first_value(path: &str) -> f32 {
    let e = read_embeddings(path).unwrap();
    assert!(e.data.iter().all(|&x| x == e.data[0]), "{:?}", e.data);
    e.data[0]
}

#[test]
fn first_embeddings_hold_the_shapes_first_call() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path("result.schema.json")).unwrap()).unwrap();
    let d = scratch("first");
    let rs = d.join("result.json");
    for warmup in [0usize, 2] {
        // Latency: the first call is the first warm-up call, else the first timed one.
        let mut lat = spec(&d, "lat", 2, 3, None);
        write_workload(&lat.workload, &corpus_batches()[0]).unwrap();
        lat.first_embeddings = Some(d.join("lat.first.safetensors").display().to_string());
        // Throughput: batch 0's first call.
        let mut thr = spec(&d, "thr", 3, 4, Some("throughput"));
        write_corpus(&thr.workload, &corpus_batches(), None).unwrap();
        thr.first_embeddings = Some(d.join("thr.first.safetensors").display().to_string());
        // Accuracy: the corpus once, no warm-up.
        let mut acc = spec(&d, "acc", 3, 4, Some("accuracy"));
        write_corpus(&acc.workload, &corpus_batches(), None).unwrap();
        acc.first_embeddings = Some(d.join("acc.first.safetensors").display().to_string());
        let plain = spec(&d, "plain", 2, 3, None);
        write_workload(&plain.workload, &corpus_batches()[0]).unwrap();

        let rq = write_request(&d, "count", timing(warmup, 4, 0.0, 30.0), vec![lat, thr, acc, plain], None, None);
        assert_eq!(run_with_paths::<Fake>("fake", &rq, &rs), ExitCode::SUCCESS);
        let r = read_json(&rs);
        check_required(&schema, &r, "result");
        let shapes = r["shapes"].as_array().unwrap();
        for s in shapes {
            assert_eq!(s["status"], "ok", "{s}");
        }
        let (lat, thr, acc, plain) = (&shapes[0], &shapes[1], &shapes[2], &shapes[3]);
        // Calls are numbered across the whole run: latency 1 .. warmup + 4.
        assert_eq!(lat["samples_ns"].as_array().unwrap().len(), 4);
        assert_eq!(first_value(lat["first_embeddings"].as_str().unwrap()), 1.0);
        assert_eq!(first_value(lat["embeddings"].as_str().unwrap()), (warmup + 4) as f32);
        let thr_first = (warmup + 4 + 1) as f32;
        let e = read_embeddings(thr["first_embeddings"].as_str().unwrap()).unwrap();
        assert_eq!((e.rows, e.dim), (2, 4)); // batch 0's rows
        assert!(e.data.iter().all(|&x| x == thr_first), "{:?}", e.data);
        let calls_before_acc = warmup + 4 + warmup + thr["samples_ns"].as_array().unwrap().len();
        assert_eq!(acc["stop_rule"], "single_pass");
        assert_eq!(acc["scenario"], "accuracy");
        assert!(acc["warmup_ns"].as_array().unwrap().is_empty());
        assert_eq!(acc["samples_ns"].as_array().unwrap().len(), 3);
        assert_eq!(acc["items"], 6);
        assert!(acc.get("passes_ns").is_none() && acc["target_ci"].is_null() && acc["ci_checks"].is_null());
        let e = read_embeddings(acc["embeddings"].as_str().unwrap()).unwrap();
        let want: Vec<f32> = [1usize, 1, 2, 2, 2, 3].iter().map(|&c| (calls_before_acc + c) as f32).collect();
        assert_eq!(e.data.chunks(4).map(|r| r[0]).collect::<Vec<_>>(), want); // each batch once, in feed order
        assert_eq!(first_value(acc["first_embeddings"].as_str().unwrap()), want[0]);
        assert!(plain["first_embeddings"].is_null());
        for s in shapes {
            let method = s["memory_method"].as_str().unwrap();
            assert_eq!(s["loop_peak_rss_mb"].is_null(), method != memory::MEMORY_RESET, "{method}");
        }
    }
}

#[test]
fn parses_precision_and_session_config() {
    let mut v: Value = serde_json::from_str(SAMPLE_REQUEST).unwrap();
    v["precision"] = "int8".into();
    v["artifact"]["precision"] = "int8".into();
    v["onnxruntime"]["session_config"] = serde_json::json!({"session.intra_op_thread_affinities": "1;2"});
    v["shapes"][0]["first_embeddings"] = "/e/first.safetensors".into();
    v["shapes"][0]["scenario"] = "accuracy".into();
    let r = Request::from_json(&v.to_string()).unwrap();
    assert_eq!((r.precision.as_str(), r.artifact.precision()), ("int8", "int8"));
    let cfg = r.onnxruntime.as_ref().unwrap().session_config.as_ref().unwrap();
    assert_eq!(cfg["session.intra_op_thread_affinities"], "1;2");
    assert_eq!(r.shapes[0].first_embeddings.as_deref(), Some("/e/first.safetensors"));
    assert!(r.shapes[0].is_accuracy() && !r.shapes[0].is_throughput());
    // Absent: an fp32 artifact, no session config, no first embeddings.
    let r = Request::from_json(SAMPLE_REQUEST).unwrap();
    assert_eq!(r.artifact.precision(), "fp32");
    assert!(r.onnxruntime.unwrap().session_config.is_none() && r.shapes[0].first_embeddings.is_none());
    // Values are strings.
    v["onnxruntime"]["session_config"] = serde_json::json!({"session.x": 1});
    assert!(Request::from_json(&v.to_string()).is_err());
}

/// The hand-computed case of tests/unit/test_outputs.py: two rows of 8 tokens.
const HAND_IDS: [i64; 16] = [0, 7, 9, 7, 3, 2, 1, 1, 0, 5, 5, 8, 2, 1, 9, 9];
const HAND_MASK: [i64; 16] = [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0];
const HAND_WEIGHTS: [f32; 16] = [0.9, 0.2, 0.0, 0.5, 0.7, 0.8, 0.6, 0.6, 0.4, 0.3, 0.1, -0.2, 0.9, 0.5, 0.9, 0.9];

/// Returns the hand-case token weights and [B, S-1, 2] multi-vectors whose first
/// value is the token's position.
struct TokenFake {
    colbert: bool,
}

impl Engine for TokenFake {
    fn load(request: &Request) -> anyhow::Result<Self> {
        Ok(TokenFake { colbert: request.model.wants_colbert() })
    }
    fn embed(&mut self, _batch: &Batch) -> anyhow::Result<Embeddings> {
        anyhow::bail!("an output mode's request: embed_outputs is called")
    }
    fn embed_outputs(&mut self, batch: &Batch) -> anyhow::Result<Outputs> {
        let (b, s) = (batch.batch, batch.seq);
        let mut out = Outputs::dense(Embeddings { rows: b, dim: 2, data: vec![1.0; b * 2] });
        out.token_weights = Some(TokenWeights { rows: b, seq: s, data: HAND_WEIGHTS.to_vec() });
        if self.colbert {
            let mut data = vec![0.0; b * (s - 1) * 2];
            for r in 0..b {
                for t in 1..s {
                    if batch.attention_mask[r * s + t] != 0 {
                        data[(r * (s - 1) + t - 1) * 2] = t as f32;
                    }
                }
            }
            out.colbert = Some(Colbert { rows: b, tokens: s - 1, dim: 2, data });
        }
        Ok(out)
    }
    fn framework(&self) -> Framework {
        Framework::new("fake", None)
    }
    fn device(&self) -> DeviceInfo {
        DeviceInfo { requested: "cpu".into(), used: "cpu".into(), provider: None }
    }
}

fn tensor_f32(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    (t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

fn tensor_i64(st: &safetensors::SafeTensors, name: &str) -> Vec<i64> {
    st.tensor(name).unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn sparse_and_colbert_through_the_harness() {
    let d = scratch("outputs");
    let mut lat = spec(&d, "tok", 2, 8, None);
    write_workload(&lat.workload, &Batch::text(2, 8, HAND_IDS.to_vec(), HAND_MASK.to_vec(), vec![6, 5])).unwrap();
    lat.first_embeddings = Some(d.join("tok.first.safetensors").display().to_string());
    let thr = spec(&d, "thr", 3, 4, Some("throughput"));
    write_corpus(&thr.workload, &corpus_batches(), None).unwrap();
    let rq = write_request(&d, "tokens", timing(1, 2, 0.0, 30.0), vec![lat, thr], None, None);
    let mut v = read_json(&rq);
    v["model"]["outputs"] = serde_json::json!(["dense", "sparse", "colbert"]);
    v["model"]["unused_token_ids"] = serde_json::json!([0, 1, 2, 3]);
    v["model"]["output_dim"] = 2.into();
    std::fs::write(&rq, v.to_string()).unwrap();
    let rs = d.join("result.json");
    assert_eq!(run_with_paths::<TokenFake>("fake", &rq, &rs), ExitCode::SUCCESS);
    let r = read_json(&rs);
    let shapes = r["shapes"].as_array().unwrap();
    assert_eq!(shapes[0]["status"], "ok", "{}", shapes[0]);
    // a corpus scenario returns the dense embedding only
    assert_eq!(shapes[1]["status"], "failed");
    assert!(shapes[1]["error"].as_str().unwrap().contains("dense output only"), "{}", shapes[1]);
    for key in ["embeddings", "first_embeddings"] {
        let bytes = std::fs::read(shapes[0][key].as_str().unwrap()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (shape, tw) = tensor_f32(&st, "token_weights");
        assert_eq!((shape, tw), (vec![2, 8], HAND_WEIGHTS.to_vec()));
        assert_eq!(tensor_i64(&st, "lexical_ids"), vec![7, 5]);
        assert_eq!(tensor_f32(&st, "lexical_weights").1, vec![0.5, 0.3]);
        assert_eq!(tensor_i64(&st, "lexical_offsets"), vec![0, 1, 2]);
        let (shape, c) = tensor_f32(&st, "colbert_vectors");
        assert_eq!(shape, vec![2, 7, 2]);
        assert_eq!((c[0], c[2 * 5], c[2 * 7 + 2 * 3]), (1.0, 0.0, 4.0)); // token 1; padding; row 1 token 4
        assert_eq!(tensor_f32(&st, "sentence_embedding").0, vec![2, 2]);
    }
}
