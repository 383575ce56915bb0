//! Fuzzes `squadlink::fuzzing::signaling_text` (see its documentation for what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink::fuzzing::signaling_text(data));
