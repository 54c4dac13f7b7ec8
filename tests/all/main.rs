//! End-to-end tests of the ensemble library and command line: one test binary,
//! one module per feature (wasmtime's layout).

mod cli;
mod compiled_cache;
mod context;
mod engine;
mod limits;
mod loading;
mod ownership;
mod plan;
mod retry;
mod workflow;
