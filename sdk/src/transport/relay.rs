//! What every target knows of TURN relays: the preference of each way of reaching one,
//! and what a TURN client's TCP/TLS stream tells the loop (native only in practice; the
//! core names it either way).

use bytes::BytesMut;

use crate::event::RelayTransport;

impl RelayTransport {
    /// ICE local preference of a relay candidate reached this way: UDP first (no head-of-line
    /// blocking), then TCP, then TLS (RFC 8445 §5.1.2.1 leaves the choice to us).
    pub(crate) fn relay_priority(self) -> u32 {
        let local_preference: u32 = match self {
            RelayTransport::Udp => 65_535,
            RelayTransport::Tcp => 32_767,
            RelayTransport::Tls => 16_383,
        };
        // Type preference 0 (relay), component 1.
        (local_preference << 8) | 255
    }
}

/// What a stream tells the network loop.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// One whole STUN or ChannelData message from the server.
    Frame(BytesMut),
    /// The stream is gone (or never came up); says why.
    Closed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_priorities_order_udp_tcp_tls() {
        let [u, t, s] = [
            RelayTransport::Udp,
            RelayTransport::Tcp,
            RelayTransport::Tls,
        ]
        .map(RelayTransport::relay_priority);
        assert!(u > t && t > s);
        assert!(u < 1 << 24, "relay type preference is 0");
    }
}
