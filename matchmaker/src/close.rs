//! Why a connection ends, and what its client is told: the error code, the message and the
//! WebSocket close code that go with it. A leaf.

use squadlink_protocol::ErrorCode;

/// Why a connection ends.
#[derive(Debug)]
pub(crate) struct Close {
    /// `None`: the client went away (closed, reset); nothing more is sent.
    pub(crate) code: Option<ErrorCode>,
    pub(crate) message: String,
    pub(crate) rid: Option<u32>,
    /// The client said goodbye (a WebSocket close frame): it leaves its lobby at once.
    pub(crate) deliberate: bool,
}

impl Close {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            message: message.into(),
            rid: None,
            deliberate: false,
        }
    }

    pub(crate) fn gone(why: impl Into<String>) -> Self {
        Self {
            code: None,
            message: why.into(),
            rid: None,
            deliberate: false,
        }
    }

    /// The connection vanished without a goodbye: its player may come back (rejoin grace).
    pub(crate) fn may_return(&self) -> bool {
        self.code.is_none() && !self.deliberate
    }

    pub(crate) fn with_rid(mut self, rid: Option<u32>) -> Self {
        self.rid = rid;
        self
    }
}

/// The WebSocket close code that goes with an error code.
pub(crate) fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::FrameTooLarge => 1009,
        ErrorCode::ServerShutdown => 1001,
        ErrorCode::Internal => 1011,
        ErrorCode::ServerFull => 1013,
        ErrorCode::Replaced => 1000,
        ErrorCode::ProtocolError => 1002,
        ErrorCode::InvalidUtf8 => 1007,
        _ => 1008,
    }
}

/// Turns a read error into a close: an oversized frame, a broken frame or invalid UTF-8 is
/// the client's fault and is told so; anything else means the connection is broken.
pub(crate) fn read_error(err: axum::Error) -> Close {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(cap)) => Close::new(
            ErrorCode::FrameTooLarge,
            format!("frame too large ({cap}); split the message or stay under max_frame_bytes"),
        ),
        Some(tungstenite::Error::Utf8(_)) => Close::new(
            ErrorCode::InvalidUtf8,
            "a text frame was not valid UTF-8: send JSON as UTF-8 text",
        ),
        // The TCP connection ended without a close frame: the client vanished (it may come
        // back within the rejoin grace), it did not misbehave.
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => Close::gone("the connection ended without a close frame"),
        Some(tungstenite::Error::Protocol(p)) => Close::new(
            ErrorCode::ProtocolError,
            format!("WebSocket protocol error: {p}"),
        ),
        _ => Close::gone(format!("read failed: {inner}")),
    }
}

pub(crate) fn replaced() -> Close {
    Close::new(
        ErrorCode::Replaced,
        "a newer connection of this player took over its lobby place; this one is closed (do not reconnect: the newer one is in use)",
    )
}

/// The close of a client whose queue of `queue` messages overflowed.
pub(crate) fn slow_consumer(queue: u32) -> Close {
    Close::new(
        ErrorCode::SlowConsumer,
        format!("more than {queue} messages were waiting for this client: read faster"),
    )
}
