//! Fuzz target: bytes as a prover pod's request to the dispatcher (see
//! `zkfleet_fuzz::dispatcher_bodies`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zkfleet_fuzz::dispatcher_bodies(data));
