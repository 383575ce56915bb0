//! Fuzzes `squadlink::fuzzing::wav` (see its documentation for what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink::fuzzing::wav(data));
