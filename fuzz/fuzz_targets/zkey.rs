//! Fuzz target: bytes as a `.zkey` proving key (see `zkfleet_fuzz::zkey`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zkfleet_fuzz::zkey(data));
