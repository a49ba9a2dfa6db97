//! `null-rust`: loads nothing, does no work. A call returns a zero output
//! [B, model.output_dim], so the timings measure what the Rust harness itself
//! costs per call. With `request.fault` set it misbehaves at shape `at_shape`
//! (on the first call of that shape): crash = abort (SIGABRT), hang = sleep
//! forever, exit = exit code 3 without writing, oom = allocate and touch
//! memory in 64 MiB chunks without bound.
//!
//! Text, image (`pixel_values`) and corpus (`scenario: throughput`) workloads
//! are all read by the harness; a call returns zeros [rows of the batch,
//! output_dim] whatever the batch holds.

use std::process::ExitCode;

use embedperf_protocol::{run, Batch, DeviceInfo, Embeddings, Engine, Fault, Framework, Request, ShapeSpec};

struct NullEngine {
    output_dim: usize,
    requested: String,
    fault: Option<Fault>,
    shape: usize,
    /// Zero buffer sized for the largest shape, allocated once at load.
    zeros: Vec<f32>,
}

impl Engine for NullEngine {
    fn load(request: &Request) -> anyhow::Result<Self> {
        let max_batch = request.shapes.iter().map(|s| s.batch).max().unwrap_or(0);
        Ok(NullEngine {
            output_dim: request.model.output_dim,
            requested: request.device.clone(),
            fault: request.fault.clone(),
            shape: 0,
            zeros: vec![0.0; max_batch * request.model.output_dim],
        })
    }

    fn begin_shape(&mut self, index: usize, _spec: &ShapeSpec) -> anyhow::Result<()> {
        self.shape = index;
        Ok(())
    }

    #[inline]
    fn embed(&mut self, batch: &Batch) -> anyhow::Result<Embeddings> {
        if let Some(f) = &self.fault {
            if f.at_shape == self.shape {
                misbehave(&f.kind);
            }
        }
        let n = batch.batch * self.output_dim;
        // The result is handed over by value (the harness owns it and may
        // truncate it in place), so it is one copy of the preallocated zeros.
        let data = if n <= self.zeros.len() { self.zeros[..n].to_vec() } else { vec![0.0; n] };
        Ok(Embeddings { rows: batch.batch, dim: self.output_dim, data })
    }

    fn framework(&self) -> Framework {
        Framework::new("none", None)
    }

    fn device(&self) -> DeviceInfo {
        DeviceInfo { requested: self.requested.clone(), used: "cpu".into(), provider: None }
    }
}

fn misbehave(kind: &str) {
    match kind {
        "crash" => std::process::abort(),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "exit" => std::process::exit(3),
        "oom" => {
            const CHUNK: usize = 64 << 20;
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut v = vec![0u8; CHUNK];
                // Touch every page so it becomes resident.
                for i in (0..CHUNK).step_by(4096) {
                    v[i] = 1;
                }
                std::hint::black_box(&mut v);
                hoard.push(v);
            }
        }
        other => {
            eprintln!("null-rust: unknown fault kind {other:?}, ignoring");
        }
    }
}

fn main() -> ExitCode {
    run::<NullEngine>("null-rust")
}
