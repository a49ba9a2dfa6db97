//! The runner harness: CLI, load timing, the timing loop, result writing.
//!
//! Follows `docs/protocol.md` ("What a runner does") step by step, with the
//! stopping rule of `timing.target_ci` ([`crate::bootstrap`]), the
//! throughput scenario (a corpus timed in full passes) and the accuracy
//! scenario (the corpus embedded once).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use clap::Parser;

use crate::bootstrap;
use crate::memory;
use crate::outputs::{check_outputs, lexical_weights, write_outputs, Outputs};
use crate::types::*;
use crate::workload::{read_corpus, read_workload, write_embeddings, Batch, Embeddings};

/// What a runner implements; [`run`] does everything else.
pub trait Engine: Sized {
    /// Load the artifact the request names; threads are already in the request.
    fn load(request: &Request) -> anyhow::Result<Self>;
    /// One call: embed a batch, output in host memory (synchronised on a GPU).
    fn embed(&mut self, batch: &Batch) -> anyhow::Result<Embeddings>;
    /// One call of a request whose `model.outputs` asks for more than the
    /// sentence embedding: every asked output in host memory (BGE-M3's token
    /// weights and/or multi-vectors; the harness adds the lexical weights).
    /// The default has none to give and fails.
    fn embed_outputs(&mut self, batch: &Batch) -> anyhow::Result<Outputs> {
        let _ = batch;
        Err(anyhow!("this runner returns the sentence embedding only; the request asks for more (model.outputs)"))
    }
    /// Name and version of the framework, plus extras (library path, sha256, binding version...).
    fn framework(&self) -> Framework;
    /// Which device and provider actually ran.
    fn device(&self) -> DeviceInfo;
    /// Settings actually applied, recorded in the result.
    fn settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Called by the harness once per shape, after its workload was read and
    /// before its first call (index into `request.shapes`). Optional hook (the
    /// null runner uses it for fault injection); an error fails that shape.
    fn begin_shape(&mut self, index: usize, spec: &ShapeSpec) -> anyhow::Result<()> {
        let _ = (index, spec);
        Ok(())
    }
}

#[derive(Parser, Debug)]
#[command(about = "embedperf runner (protocol v1)")]
struct Cli {
    /// Request JSON written by the orchestrator.
    #[arg(long)]
    request: PathBuf,
    /// Where to write the result JSON (rewritten atomically).
    #[arg(long)]
    result: PathBuf,
}

/// Parse --request/--result with clap, load with timing, run every shape with
/// the timing loop, write results; returns the process exit code.
///
/// Exit codes: 0 when loading succeeded (even if some shapes failed: they are
/// marked `failed` in the result), 1 when the request could not be read, the
/// load failed, or the result file could not be written, 2 on bad arguments.
pub fn run<E: Engine>(runner_name: &str) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    run_with_paths::<E>(runner_name, &cli.request, &cli.result)
}

/// [`run`] without the command line (tests, embedding in other tools).
pub fn run_with_paths<E: Engine>(runner_name: &str, request_path: &Path, result_path: &Path) -> ExitCode {
    let runner = RunnerInfo {
        name: runner_name.to_string(),
        language: "rust".into(),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
    };

    // 1. Parse the request; check protocol == 1 (error kind "protocol", as the
    //    Python harness), any other unreadable request is kind "request".
    let request = match read_request(request_path) {
        Ok(r) => r,
        Err((kind, e)) => {
            eprintln!("{runner_name}: bad request: {e:#}");
            let result = RunResult {
                protocol: PROTOCOL_VERSION,
                runner,
                framework: Framework::new("unknown", None),
                device: DeviceInfo { requested: String::new(), used: "none".into(), provider: None },
                threads: Threads { intra_op: 1, inter_op: 1 },
                settings: serde_json::Value::Null,
                load_s: None,
                peak_rss_mb: memory::vm_hwm_mib(),
                shapes: Vec::new(),
                error: Some(ErrorInfo { kind: kind.into(), message: format!("{e:#}") }),
            };
            let _ = write_result(result_path, &result);
            return ExitCode::from(1);
        }
    };

    // 2.-3. Load (threads are in the request), timed.
    let t0 = Instant::now();
    let loaded = catch_unwind(AssertUnwindSafe(|| E::load(&request)));
    let load_s = t0.elapsed().as_secs_f64();
    let mut peak = memory::vm_hwm_mib();
    let mut engine = match flatten_panic(loaded) {
        Ok(e) => e,
        Err(e) => {
            // A refusal (Unsupported) is its own kind: the cell is skipped, not failed.
            let (kind, message) = match e.downcast_ref::<Unsupported>() {
                Some(u) => ("unsupported", u.0.lines().next().unwrap_or("").to_string()),
                None => ("load", format!("{e:#}")),
            };
            eprintln!("{runner_name}: {kind}: {e:#}");
            let result = RunResult {
                protocol: PROTOCOL_VERSION,
                runner,
                framework: Framework::new("unknown", None),
                device: DeviceInfo { requested: request.device.clone(), used: "none".into(), provider: None },
                threads: request.threads,
                settings: serde_json::Value::Null,
                load_s: None,
                peak_rss_mb: peak,
                shapes: Vec::new(),
                error: Some(ErrorInfo { kind: kind.into(), message }),
            };
            let _ = write_result(result_path, &result);
            return ExitCode::from(1);
        }
    };

    let settings = match engine.settings() {
        serde_json::Value::Null => serde_json::Value::Null,
        v @ serde_json::Value::Object(_) => v,
        other => serde_json::json!({ "value": other }),
    };
    let mut result = RunResult {
        protocol: PROTOCOL_VERSION,
        runner,
        framework: engine.framework(),
        device: engine.device(),
        threads: request.threads,
        settings,
        load_s: Some(load_s),
        peak_rss_mb: peak,
        shapes: Vec::with_capacity(request.shapes.len()),
        error: None,
    };
    let mut write_ok = report(write_result(result_path, &result));

    // 4. Every shape, in order; a failure marks the shape and we go on.
    let expected_dim = request.model.truncate_dim.map_or(request.model.output_dim, |t| t.min(request.model.output_dim));
    for (index, spec) in request.shapes.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if spec.is_throughput() {
                run_throughput_shape(&mut engine, index, spec, &request, expected_dim, &mut peak)
            } else if spec.is_accuracy() {
                run_accuracy_shape(&mut engine, index, spec, &request, expected_dim, &mut peak)
            } else {
                run_latency_shape(&mut engine, index, spec, &request, expected_dim, &mut peak)
            }
        }));
        let shape = match flatten_panic(outcome) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "{runner_name}: shape {index} [{}x{}] ({}) failed: {e:#}",
                    spec.batch,
                    spec.seq,
                    spec.scenario()
                );
                peak = max_opt(peak, memory::vm_hwm_mib());
                let mut s = ShapeResult::failed(spec, format!("{e:#}"));
                s.peak_rss_mb = peak;
                s
            }
        };
        result.shapes.push(shape);
        result.peak_rss_mb = peak;
        write_ok &= report(write_result(result_path, &result));
    }

    // 5.
    if write_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_request(path: &Path) -> std::result::Result<Request, (&'static str, anyhow::Error)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ("request", anyhow!("cannot read request {}: {e}", path.display())))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ("request", anyhow!("request {} is not JSON: {e}", path.display())))?;
    let version = value.get("protocol").cloned().unwrap_or(serde_json::Value::Null);
    if version != serde_json::json!(PROTOCOL_VERSION) {
        return Err(("protocol", anyhow!("request protocol {version} != {PROTOCOL_VERSION}")));
    }
    serde_json::from_value(value).map_err(|e| ("request", anyhow!("invalid request {}: {e}", path.display())))
}

fn report(r: Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("cannot write result: {e:#}");
            false
        }
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn flatten_panic<T>(r: std::thread::Result<Result<T>>) -> Result<T> {
    match r {
        Ok(inner) => inner,
        Err(payload) => {
            let msg = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            Err(anyhow!("panic: {msg}"))
        }
    }
}

/// What a call does beyond the engine's embed: truncation, and the extra
/// outputs the request asks for (with the lexical weights of a sparse call).
struct CallSpec<'a> {
    truncate: Option<usize>,
    extra: bool,
    sparse: bool,
    unused: &'a [i64],
}

impl<'a> CallSpec<'a> {
    fn of(model: &'a ModelInfo) -> Self {
        CallSpec {
            truncate: model.truncate_dim,
            extra: model.has_extra_outputs(),
            sparse: model.wants_sparse(),
            unused: model.unused_token_ids.as_deref().unwrap_or(&[]),
        }
    }
}

/// One timed call: the engine's embed plus truncation/renormalisation, and for
/// a sparse call the lexical weights (what a user of that output does with the
/// token weights; docs/outputs.md).
#[inline(always)]
fn call<E: Engine>(engine: &mut E, batch: &Batch, spec: &CallSpec) -> Result<Outputs> {
    if !spec.extra {
        let mut e = engine.embed(batch)?;
        if let Some(d) = spec.truncate {
            truncate_and_normalize(&mut e, d);
        }
        return Ok(Outputs::dense(e));
    }
    let mut out = engine.embed_outputs(batch)?;
    if let Some(d) = spec.truncate {
        truncate_and_normalize(&mut out.dense, d);
    }
    if spec.sparse {
        if let Some(t) = &out.token_weights {
            ensure!(t.data.len() == batch.batch * batch.seq, "token_weights is not [batch, seq]");
            out.lexical = Some(lexical_weights(
                &t.data,
                &batch.input_ids,
                &batch.attention_mask,
                batch.batch,
                batch.seq,
                spec.unused,
            ));
        }
    }
    Ok(out)
}

#[inline(always)]
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Upper bound on the preallocated sample buffer (entries; 32 MiB of address
/// space, touched only as it fills). Beyond it the Vec grows as usual.
const MAX_PREALLOC_SAMPLES: usize = 1 << 22;

/// Warm-up: `timing.warmup` calls on `batch_at(0)`, `batch_at(1)`, ...; the
/// first one is the first call. Returns every call's time and, with
/// `keep_first`, the first call's output (moved out after its timed span).
fn warm_up<'b, E: Engine>(
    engine: &mut E,
    warmup: usize,
    spec: &CallSpec,
    keep_first: bool,
    mut batch_at: impl FnMut(usize) -> &'b Batch,
) -> Result<(Vec<u64>, Option<Outputs>)> {
    let mut warmup_ns = Vec::with_capacity(warmup);
    let mut first = None;
    for i in 0..warmup {
        let batch = batch_at(i);
        let t0 = Instant::now();
        let out = call(engine, batch, spec)?;
        let t1 = Instant::now();
        warmup_ns.push(nanos(t1 - t0));
        if keep_first && i == 0 {
            first = Some(out);
        }
    }
    Ok((warmup_ns, first))
}

/// How many samples to preallocate: enough for max_seconds at the fastest
/// warm-up call (at least `at_least`, at most `max_calls`), so the loop itself
/// does not reallocate.
fn sample_capacity(warmup_ns: &[u64], timing: &Timing, at_least: usize, max_calls: usize) -> usize {
    let estimate = match warmup_ns.iter().copied().min() {
        Some(m) if m > 0 => ((timing.max_seconds * 1e9) / m as f64).ceil().min(MAX_PREALLOC_SAMPLES as f64) as usize,
        _ => 4096,
    };
    at_least.max(estimate).min(max_calls).saturating_add(1)
}

fn first_call_s(warmup_ns: &[u64], samples_ns: &[u64]) -> Option<f64> {
    match (warmup_ns.first(), samples_ns.first()) {
        (Some(&w), _) => Some(w as f64 * 1e-9),
        // No warm-up: the first timed call is the first call.
        (None, Some(&s)) => Some(s as f64 * 1e-9),
        (None, None) => None,
    }
}

fn check_output(out: &Embeddings, rows: usize, expected_dim: usize) -> Result<()> {
    anyhow::ensure!(
        out.rows == rows && out.dim == expected_dim && out.data.len() == out.rows * out.dim,
        "engine returned [{}x{}] ({} floats), expected [{}x{}]",
        out.rows,
        out.dim,
        out.data.len(),
        rows,
        expected_dim
    );
    Ok(())
}

/// Check a call's outputs: the sentence embedding, and exactly the extra outputs asked.
fn check_all(out: &Outputs, model: &ModelInfo, rows: usize, seq: usize, expected_dim: usize) -> Result<()> {
    check_output(&out.dense, rows, expected_dim)?;
    check_outputs(out, model.wants_sparse(), model.wants_colbert(), rows, seq)
}

/// Write the first call's output where `shapes[].first_embeddings` asks.
fn write_first(spec: &ShapeSpec, first: Option<&Outputs>, rows: usize, expected_dim: usize) -> Result<Option<String>> {
    match (&spec.first_embeddings, first) {
        (Some(path), Some(out)) => {
            check_output(&out.dense, rows, expected_dim).context("first call")?;
            write_outputs(path, out)?;
            Ok(Some(path.clone()))
        }
        (Some(_), None) => Err(anyhow!("first_embeddings asked but no first call was kept")),
        (None, _) => Ok(None),
    }
}

/// The workload's kind must be the model's tower: pixel_values for
/// `modality: image`, input_ids otherwise.
fn check_modality(model: &ModelInfo, batch: &Batch, spec: &ShapeSpec) -> Result<()> {
    match (model.is_image(), batch.is_image()) {
        (true, false) => Err(anyhow!("model.modality is image but workload {} has no pixel_values", spec.workload)),
        (false, true) => Err(anyhow!(
            "workload {} holds pixel_values but model.modality is {}",
            spec.workload,
            model.modality.as_deref().unwrap_or("text (default)")
        )),
        _ => Ok(()),
    }
}

/// Scenario `latency`: one batch called repeatedly.
fn run_latency_shape<E: Engine>(
    engine: &mut E,
    index: usize,
    spec: &ShapeSpec,
    request: &Request,
    expected_dim: usize,
    peak: &mut Option<f64>,
) -> Result<ShapeResult> {
    let timing = &request.timing;
    let calls = CallSpec::of(&request.model);
    let keep_first = spec.first_embeddings.is_some();

    // Read the workload.
    let batch = read_workload(&spec.workload, Some((spec.batch, spec.seq)))?;
    check_modality(&request.model, &batch, spec)?;
    engine.begin_shape(index, spec)?;

    // Warm-up: the first call is timed alone as first_call_s; all are kept.
    let (warmup_ns, mut first) = warm_up(engine, timing.warmup, &calls, keep_first, |_| &batch)?;

    let max_calls = timing.max_calls.unwrap_or(usize::MAX).max(1);
    let mut samples_ns: Vec<u64> = Vec::with_capacity(sample_capacity(&warmup_ns, timing, timing.min_calls, max_calls));

    // Process peak so far, then reset the high-water mark for the loop.
    *peak = max_opt(*peak, memory::vm_hwm_mib());
    let reset = memory::reset_hwm();

    // Timed loop. With target_ci, once min_calls and min_seconds are met the
    // bootstrap check runs at n >= max(min_calls, 10), then at ceil(1.1 n).
    // The loop is rotated (a call, then [checks, call]...) so that without
    // warm-up the first timed call's output can be kept between that call and
    // the checks, with nothing added inside the loop.
    let min_calls = timing.min_calls.max(1);
    let min_dur = Duration::from_secs_f64(timing.min_seconds.max(0.0));
    let max_dur = Duration::from_secs_f64(timing.max_seconds.max(0.0));
    let target_ci = timing.target_ci;
    let mut next_check = bootstrap::first_check(min_calls);
    let mut ci_checks = 0usize;
    let loop_start = Instant::now();
    let t0 = Instant::now();
    let mut out = call(engine, &batch, &calls)?;
    let mut t1 = Instant::now();
    samples_ns.push(nanos(t1 - t0));
    if keep_first && first.is_none() {
        first = Some(out.clone());
    }
    let stop_rule = loop {
        let n = samples_ns.len();
        let elapsed = t1 - loop_start;
        if n >= min_calls && elapsed >= min_dur {
            match target_ci {
                None => break "min_reached",
                Some(r) if n >= next_check => {
                    ci_checks += 1;
                    next_check = bootstrap::next_check_after(n);
                    if bootstrap::check(&samples_ns, r).is_some_and(|c| c.reached) {
                        break "ci_reached";
                    }
                }
                Some(_) => {}
            }
        }
        if elapsed >= max_dur {
            break "time_cap";
        }
        if n >= max_calls {
            break "call_cap";
        }
        // The previous call's output is dropped here, before this call's timed span.
        drop(out);
        let t0 = Instant::now();
        out = call(engine, &batch, &calls)?;
        t1 = Instant::now();
        samples_ns.push(nanos(t1 - t0));
    };
    let loop_s = (t1 - loop_start).as_secs_f64();

    // Loop peak, then the whole-process peak.
    let reading = memory::vm_hwm_mib();
    *peak = max_opt(*peak, reading);
    let (loop_peak, memory_method) = memory::loop_peak(reset, reading);

    // The last call's output, and the first call's when asked.
    check_all(&out, &request.model, batch.batch, batch.seq, expected_dim)?;
    if let Some(f) = &first {
        check_all(f, &request.model, batch.batch, batch.seq, expected_dim).context("first call")?;
    }
    write_outputs(&spec.embeddings, &out)?;
    let first_embeddings = write_first(spec, first.as_ref(), batch.batch, expected_dim)?;

    Ok(ShapeResult {
        batch: batch.batch,
        seq: batch.seq,
        status: "ok".into(),
        error: None,
        first_call_s: first_call_s(&warmup_ns, &samples_ns),
        warmup_ns,
        samples_ns,
        stop_rule: Some(stop_rule.into()),
        loop_s: Some(loop_s),
        peak_rss_mb: *peak,
        loop_peak_rss_mb: loop_peak,
        memory_method: Some(memory_method.into()),
        embeddings: Some(spec.embeddings.clone()),
        first_embeddings,
        scenario: "latency".into(),
        target_ci,
        ci_checks: target_ci.map(|_| ci_checks),
        passes_ns: None,
        items: None,
    })
}

/// Read a corpus workload for the throughput and accuracy scenarios.
fn read_corpus_for(spec: &ShapeSpec, request: &Request) -> Result<(Vec<Batch>, usize)> {
    anyhow::ensure!(
        !request.model.is_image(),
        "scenario {} reads a text corpus; model.modality is image",
        spec.scenario()
    );
    anyhow::ensure!(
        !request.model.has_extra_outputs(),
        "scenario {} takes the dense output only; model.outputs asks for more",
        spec.scenario()
    );
    let batches = read_corpus(&spec.workload)?;
    let items: usize = batches.iter().map(|b| b.batch).sum();
    Ok((batches, items))
}

/// Concatenate corpus outputs (one per batch, in feed order), checking each.
fn concat_outputs(outs: &[Outputs], batches: &[Batch], items: usize, expected_dim: usize) -> Result<Embeddings> {
    let mut data = Vec::with_capacity(items * expected_dim);
    for (i, (out, batch)) in outs.iter().zip(batches).enumerate() {
        check_output(&out.dense, batch.batch, expected_dim).with_context(|| format!("corpus batch {i}"))?;
        data.extend_from_slice(&out.dense.data);
    }
    Ok(Embeddings { rows: items, dim: expected_dim, data })
}

/// Scenario `throughput`: full passes over a corpus of K batches.
///
/// Warm-up calls go to batches 0, 1, ... (mod K). Each timed call's time goes
/// into `samples_ns`, each full pass's wall time (first call's start to last
/// call's end) into `passes_ns`. After each call past the first full pass the
/// loop stops at `max_seconds` (`time_cap`); after each full pass it stops
/// once elapsed >= `min_seconds` (`min_reached`), then at `max_seconds`, then
/// once `max_calls` calls are done (`call_cap`, checked only at pass ends).
/// A pass cut short by the time cap is dropped from `samples_ns`, so its
/// length is always passes·K. `target_ci` and `min_calls` do not apply.
/// The embeddings are the last full pass's outputs, concatenated in feed order.
fn run_throughput_shape<E: Engine>(
    engine: &mut E,
    index: usize,
    spec: &ShapeSpec,
    request: &Request,
    expected_dim: usize,
    peak: &mut Option<f64>,
) -> Result<ShapeResult> {
    let timing = &request.timing;
    let calls = CallSpec::of(&request.model);
    let keep_first = spec.first_embeddings.is_some();
    let (batches, items) = read_corpus_for(spec, request)?;
    let k = batches.len();
    engine.begin_shape(index, spec)?;

    let (warmup_ns, mut first) = warm_up(engine, timing.warmup, &calls, keep_first, |i| &batches[i % k])?;

    // Capacity in whole passes.
    let max_calls = timing.max_calls.unwrap_or(usize::MAX).max(1);
    let capacity = sample_capacity(&warmup_ns, timing, k, max_calls.saturating_add(k)).div_ceil(k).saturating_mul(k);
    let mut samples_ns: Vec<u64> = Vec::with_capacity(capacity.min(MAX_PREALLOC_SAMPLES.max(k)));
    let mut passes_ns: Vec<u64> = Vec::new();
    let mut current: Vec<Outputs> = Vec::with_capacity(k);
    let mut last_pass: Vec<Outputs> = Vec::with_capacity(k);

    *peak = max_opt(*peak, memory::vm_hwm_mib());
    let reset = memory::reset_hwm();

    let min_dur = Duration::from_secs_f64(timing.min_seconds.max(0.0));
    let max_dur = Duration::from_secs_f64(timing.max_seconds.max(0.0));
    // One flat loop over calls, rotated like the latency loop: the first call
    // is made before it, so its output can be kept with nothing added inside.
    let mut i = 0usize; // position of the latest call in its pass
    let loop_start = Instant::now();
    let t0 = Instant::now();
    let mut pass_start = t0;
    current.push(call(engine, &batches[0], &calls)?);
    let mut t1 = Instant::now();
    samples_ns.push(nanos(t1 - t0));
    if keep_first && first.is_none() {
        first = Some(current[0].clone());
    }
    let stop_rule = loop {
        let elapsed = t1 - loop_start;
        if i + 1 < k {
            if !passes_ns.is_empty() && elapsed >= max_dur {
                // Cut short: keep whole passes only.
                samples_ns.truncate(passes_ns.len() * k);
                break "time_cap";
            }
            i += 1;
        } else {
            // A full pass is done: its outputs become the last full pass.
            passes_ns.push(nanos(t1 - pass_start));
            std::mem::swap(&mut current, &mut last_pass);
            current.clear();
            if elapsed >= min_dur {
                break "min_reached";
            }
            if elapsed >= max_dur {
                break "time_cap";
            }
            if samples_ns.len() >= max_calls {
                break "call_cap";
            }
            i = 0;
        }
        let t0 = Instant::now();
        if i == 0 {
            pass_start = t0;
        }
        current.push(call(engine, &batches[i], &calls)?);
        t1 = Instant::now();
        samples_ns.push(nanos(t1 - t0));
    };
    let loop_s = (t1 - loop_start).as_secs_f64();
    drop(current);

    let reading = memory::vm_hwm_mib();
    *peak = max_opt(*peak, reading);
    let (loop_peak, memory_method) = memory::loop_peak(reset, reading);

    // The last full pass, rows concatenated in feed order.
    let all = concat_outputs(&last_pass, &batches, items, expected_dim)?;
    drop(last_pass);
    write_embeddings(&spec.embeddings, &all)?;
    let first_embeddings = write_first(spec, first.as_ref(), batches[0].batch, expected_dim)?;

    Ok(ShapeResult {
        batch: spec.batch,
        seq: spec.seq,
        status: "ok".into(),
        error: None,
        first_call_s: first_call_s(&warmup_ns, &samples_ns),
        warmup_ns,
        samples_ns,
        stop_rule: Some(stop_rule.into()),
        loop_s: Some(loop_s),
        peak_rss_mb: *peak,
        loop_peak_rss_mb: loop_peak,
        memory_method: Some(memory_method.into()),
        embeddings: Some(spec.embeddings.clone()),
        first_embeddings,
        scenario: "throughput".into(),
        target_ci: None,
        ci_checks: None,
        passes_ns: Some(passes_ns),
        items: Some(items),
    })
}

/// Scenario `accuracy`: every batch of the corpus embedded exactly once, in
/// feed order, with no warm-up; each call's time goes into `samples_ns` for the
/// record (`stop_rule: single_pass`), the embeddings are every output in feed
/// order. It measures what a precision costs in accuracy on real sentences.
fn run_accuracy_shape<E: Engine>(
    engine: &mut E,
    index: usize,
    spec: &ShapeSpec,
    request: &Request,
    expected_dim: usize,
    peak: &mut Option<f64>,
) -> Result<ShapeResult> {
    let calls = CallSpec::of(&request.model);
    let (batches, items) = read_corpus_for(spec, request)?;
    engine.begin_shape(index, spec)?;

    let mut samples_ns: Vec<u64> = Vec::with_capacity(batches.len());
    let mut outs: Vec<Outputs> = Vec::with_capacity(batches.len());
    *peak = max_opt(*peak, memory::vm_hwm_mib());
    let reset = memory::reset_hwm();
    let loop_start = Instant::now();
    for batch in &batches {
        let t0 = Instant::now();
        let out = call(engine, batch, &calls)?;
        let t1 = Instant::now();
        samples_ns.push(nanos(t1 - t0));
        outs.push(out);
    }
    let loop_s = loop_start.elapsed().as_secs_f64();
    let reading = memory::vm_hwm_mib();
    *peak = max_opt(*peak, reading);
    let (loop_peak, memory_method) = memory::loop_peak(reset, reading);

    let all = concat_outputs(&outs, &batches, items, expected_dim)?;
    write_embeddings(&spec.embeddings, &all)?;
    let first_embeddings = write_first(spec, outs.first(), batches[0].batch, expected_dim)?;

    Ok(ShapeResult {
        batch: spec.batch,
        seq: spec.seq,
        status: "ok".into(),
        error: None,
        first_call_s: first_call_s(&[], &samples_ns),
        warmup_ns: Vec::new(),
        samples_ns,
        stop_rule: Some("single_pass".into()),
        loop_s: Some(loop_s),
        peak_rss_mb: *peak,
        loop_peak_rss_mb: loop_peak,
        memory_method: Some(memory_method.into()),
        embeddings: Some(spec.embeddings.clone()),
        first_embeddings,
        scenario: "accuracy".into(),
        target_ci: None,
        ci_checks: None,
        passes_ns: None,
        items: Some(items),
    })
}

/// Matryoshka truncation + L2 renormalisation, applied by the harness inside
/// each timed call when request.model.truncate_dim is set.
///
/// Keeps the first `dim` columns of every row (all of them if `dim >= e.dim`),
/// in place without allocating, then divides each row by its L2 norm
/// (clamped to 1e-12 like torch.nn.functional.normalize).
pub fn truncate_and_normalize(e: &mut Embeddings, dim: usize) {
    let old = e.dim;
    let new = dim.min(old);
    if new < old {
        for r in 1..e.rows {
            e.data.copy_within(r * old..r * old + new, r * new);
        }
        e.data.truncate(e.rows * new);
        e.dim = new;
    }
    if new == 0 {
        return;
    }
    for row in e.data.chunks_exact_mut(new) {
        let norm = row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12);
        let inv = (1.0 / norm) as f32;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// Write the result atomically: a temporary file in the same folder, then rename.
pub fn write_result(path: &Path, result: &RunResult) -> Result<()> {
    let text = serde_json::to_vec_pretty(result)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| anyhow!("result path {} has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
