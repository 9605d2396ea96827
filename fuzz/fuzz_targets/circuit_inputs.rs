//! Fuzz target: bytes as a job's circuit-input JSON (see `zkfleet_fuzz::circuit_inputs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zkfleet_fuzz::circuit_inputs(data));
