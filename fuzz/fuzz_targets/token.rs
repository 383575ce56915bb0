//! Fuzzes player token checking (`squadlink_matchmaker::auth::verify_token_with`) with and
//! without audience/issuer rules: never a panic, and only a token signed with the secret
//! is ever accepted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| squadlink_matchmaker::auth::fuzz_token(data));
