//! Fuzzes `squadlink::fuzzing::reliable_frames` (see its documentation for what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink::fuzzing::reliable_frames(data));
