//! Entry points for the fuzzers in `fuzz/` (feature `fuzzing`; not a stable API). The unit
//! test below runs every file under `fuzz/regressions/protocol_*` through them.

use crate::{ClientMessage, ErrorCode, ServerMessage};

/// A client's text frame, as the matchmaker decodes it: a message or a typed error, and a
/// decoded message survives encoding and decoding unchanged.
pub fn client_frame(data: &[u8]) {
    // WebSocket text frames are UTF-8 (the server closes on anything else before decoding).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMessage::from_json(text) {
        Ok(msg) => {
            let json = msg.to_json();
            assert!(json.is_ok(), "{msg:?} does not encode");
            if let Ok(json) = json {
                assert_eq!(ClientMessage::from_json(&json).ok(), Some(msg), "{json}");
            }
        }
        Err(e) => assert!(
            matches!(
                e.code,
                ErrorCode::BadJson | ErrorCode::UnknownType | ErrorCode::InvalidField
            ),
            "{e:?}"
        ),
    }
}

/// A server's text frame, as the SDK decodes it.
pub fn server_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = ServerMessage::from_json(text) {
        let json = msg.to_json();
        assert!(json.is_ok(), "{msg:?} does not encode");
        if let Ok(json) = json {
            assert_eq!(ServerMessage::from_json(&json).ok(), Some(msg), "{json}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn every_recorded_fuzzer_crash_stays_fixed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
        let mut ran = 0;
        for (dir, f) in [
            ("protocol_client", super::client_frame as fn(&[u8])),
            ("protocol_server", super::server_frame),
        ] {
            for input in std::fs::read_dir(root.join(dir)).unwrap() {
                f(&std::fs::read(input.unwrap().path()).unwrap());
                ran += 1;
            }
        }
        assert!(ran > 0, "no regression inputs under {}", root.display());
    }
}
