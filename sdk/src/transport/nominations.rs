//! Nominations `rtc` leaves unanswered, handed to it again.
//!
//! `rtc` 0.21.1's controlled ICE agent does not answer a Binding request that carries
//! USE-CANDIDATE on a pair it has not checked yet: it only queues a triggered check of its
//! own (`rtc-ice` `agent_selector.rs`, `handle_binding_request`), where RFC 8445 §7.3 has
//! it answer every valid request. A controlling peer that nominates with its first check —
//! Chrome does, when it offers — gets no answer and nominates again with its next check,
//! 50–60 ms later: that was most of a browser-to-native connect on loopback (a packet trace
//! of `bench_browser` showed it). So a nominating request is kept, and handed to the engine
//! once more when the pair's triggered check succeeds (a Binding success from the same
//! address): the pair has succeeded by then, so the engine selects it and answers the
//! peer's request. When the engine answers the request itself, nothing is handed again.
//!
//! Bytes come from the network: at most [`HELD`] requests are kept, each handed again once,
//! and the engine checks each as it checks any (its MESSAGE-INTEGRITY included).

use std::net::SocketAddr;

use crate::stun;

/// STUN attribute USE-CANDIDATE (RFC 8445 §16.1).
const USE_CANDIDATE: u16 = 0x0025;
/// Nominating requests kept at once (one per remote address; the oldest goes).
const HELD: usize = 4;

/// Nominating Binding requests the engine may have left unanswered, by remote address.
#[derive(Debug, Default)]
pub(crate) struct Nominations {
    held: Vec<(SocketAddr, Vec<u8>)>,
}

impl Nominations {
    /// A datagram from `from`, before the engine reads it. A nominating Binding request is
    /// kept; a Binding success from an address with one kept returns that request, for
    /// the engine to read again after this datagram.
    pub(crate) fn inbound(&mut self, from: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        let message = stun::Message::parse(data)?;
        match message.kind {
            stun::BINDING_REQUEST
                if message.attributes().any(|(kind, _)| kind == USE_CANDIDATE) =>
            {
                self.forget(from);
                if self.held.len() >= HELD {
                    self.held.remove(0);
                }
                self.held.push((from, data.to_vec()));
                None
            }
            stun::BINDING_SUCCESS => {
                let at = self.held.iter().position(|(addr, _)| *addr == from)?;
                Some(self.held.remove(at).1)
            }
            _ => None,
        }
    }

    /// A datagram the engine sends to `to`: a Binding success answers the request kept for
    /// `to` (if any), which then needs no second reading.
    pub(crate) fn outbound(&mut self, to: SocketAddr, data: &[u8]) {
        if stun::Message::parse(data).is_some_and(|m| m.kind == stun::BINDING_SUCCESS) {
            self.forget(to);
        }
    }

    fn forget(&mut self, addr: SocketAddr) {
        self.held.retain(|(a, _)| *a != addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN message of `kind` with a transaction id of `tid` and the given attributes
    /// (type, value), without integrity (the engine checks that, not this).
    fn message(kind: u16, tid: u8, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attributes {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&u16::try_from(v.len()).unwrap().to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = kind.to_be_bytes().to_vec();
        m.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&stun::MAGIC.to_be_bytes());
        m.extend_from_slice(&[tid; 12]);
        m.extend_from_slice(&body);
        m
    }

    fn nominating(tid: u8) -> Vec<u8> {
        message(
            stun::BINDING_REQUEST,
            tid,
            &[(0x0006, b"ab:cd"), (USE_CANDIDATE, b"")],
        )
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_nomination_is_read_again_once_after_the_pairs_own_check_succeeds() {
        let mut n = Nominations::default();
        let request = nominating(1);
        assert_eq!(n.inbound(addr(5000), &request), None);
        // The engine sent its triggered check, not an answer; the check's success comes.
        let success = message(stun::BINDING_SUCCESS, 9, &[]);
        assert_eq!(n.inbound(addr(5000), &success), Some(request));
        assert_eq!(n.inbound(addr(5000), &success), None, "only once");
    }

    #[test]
    fn a_nomination_the_engine_answered_is_not_read_again() {
        let mut n = Nominations::default();
        n.inbound(addr(5000), &nominating(1));
        n.outbound(addr(5000), &message(stun::BINDING_SUCCESS, 1, &[]));
        assert_eq!(
            n.inbound(addr(5000), &message(stun::BINDING_SUCCESS, 9, &[])),
            None
        );
    }

    #[test]
    fn only_nominating_requests_are_kept_and_only_for_their_address() {
        let mut n = Nominations::default();
        let plain = message(stun::BINDING_REQUEST, 2, &[(0x0006, b"ab:cd")]);
        let success = message(stun::BINDING_SUCCESS, 9, &[]);
        n.inbound(addr(5000), &plain);
        assert_eq!(n.inbound(addr(5000), &success), None);
        n.inbound(addr(5000), &nominating(3));
        assert_eq!(n.inbound(addr(6000), &success), None, "another address");
        assert_eq!(n.inbound(addr(5000), &[23, 254, 253, 0, 1]), None, "DTLS");
    }

    #[test]
    fn at_most_a_few_are_kept_and_the_oldest_goes() {
        let mut n = Nominations::default();
        for port in 0..10 {
            n.inbound(addr(5000 + port), &nominating(1));
        }
        let success = message(stun::BINDING_SUCCESS, 9, &[]);
        assert_eq!(
            n.inbound(addr(5000), &success),
            None,
            "dropped for newer ones"
        );
        assert!(n.inbound(addr(5009), &success).is_some());
        assert!(n.held.len() < HELD);
    }
}
