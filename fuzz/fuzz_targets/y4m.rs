//! Fuzzes `squadlink::fuzzing::y4m` (see its documentation for what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink::fuzzing::y4m(data));
