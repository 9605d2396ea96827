//! Fuzz target: bytes as a `.wtns` witness (see `zkfleet_fuzz::wtns`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zkfleet_fuzz::wtns(data));
