//! Fuzzes `squadlink::fuzzing::vp8_decode` (see its documentation for what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink::fuzzing::vp8_decode(data));
