//! Fuzzes the SDK's decoding of server frames (`ServerMessage::from_json`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink_protocol::fuzz::server_frame(data));
