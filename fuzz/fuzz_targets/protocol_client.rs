//! Fuzzes the matchmaker's decoding of client frames (`ClientMessage::from_json`): whatever
//! a client sends is a message or a typed error, and a decoded message encodes and decodes to
//! itself.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink_protocol::fuzz::client_frame(data));
