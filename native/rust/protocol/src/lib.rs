//! embedperf runner protocol, version 1, for Rust runners.
//!
//! The contract is `docs/protocol.md` plus the JSON Schemas in
//! `src/embedperf/protocol/`. A runner implements [`Engine`] and calls
//! [`run`] from `main`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     embedperf_protocol::run::<MyEngine>("my-runner")
//! }
//! ```

pub mod bootstrap;
pub mod harness;
pub mod memory;
pub mod outputs;
pub mod types;
pub mod workload;

pub use harness::{run, run_with_paths, truncate_and_normalize, write_result, Engine};
pub use outputs::{lexical_weights, Colbert, Lexical, Outputs, TokenWeights};
pub use types::*;
pub use workload::{
    read_corpus, read_embeddings, read_workload, write_corpus, write_embeddings, write_workload, Batch, Embeddings,
};
