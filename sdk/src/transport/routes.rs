//! Which peer a datagram on the shared socket is for, as a component with its own state.
//! Every peer connection uses the one UDP socket: a connectivity check (STUN Binding
//! request) names its receiver by our ICE username fragment, and teaches us the address it
//! came from; everything else (DTLS, SCTP, SRTP, STUN answers) is routed by that address.

use std::collections::HashMap;
use std::net::SocketAddr;

use squadlink_protocol::PeerId;

use super::net::stun_request_ufrag;

/// How a datagram is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A connectivity check for this peer's current ufrag: if the peer takes it, call
    /// [`Routes::confirm`] so later datagrams from the address go to it too.
    Check(PeerId),
    /// Anything else from an address a peer uses.
    Known(PeerId),
    /// Nobody's.
    Unknown,
}

/// The routing tables.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
}

impl Routes {
    /// Where `data`, from `from`, goes.
    pub(crate) fn route(&self, data: &[u8], from: SocketAddr) -> Route {
        match stun_request_ufrag(data) {
            Some(ufrag) => self
                .by_ufrag
                .get(ufrag)
                .map_or(Route::Unknown, |p| Route::Check(*p)),
            None => self
                .by_addr
                .get(&from)
                .map_or(Route::Unknown, |p| Route::Known(*p)),
        }
    }

    /// `peer` took a check from `from`: what comes from there is for it.
    pub(crate) fn confirm(&mut self, from: SocketAddr, peer: PeerId) {
        self.by_addr.insert(from, peer);
    }

    /// `peer` announced a candidate at `addr`: what comes from there is for it, unless
    /// another peer already uses that address.
    pub(crate) fn expect(&mut self, addr: SocketAddr, peer: PeerId) {
        self.by_addr.entry(addr).or_insert(peer);
    }

    /// Our ufrag towards `peer` is now `new` (a new local description), no longer `old`.
    pub(crate) fn set_ufrag(&mut self, old: &str, new: &str, peer: PeerId) {
        self.by_ufrag.remove(old);
        self.by_ufrag.insert(new.to_string(), peer);
    }

    /// `peer` is gone (its ufrag was `ufrag`): nothing is routed to it any more.
    pub(crate) fn forget(&mut self, peer: PeerId, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, p| *p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A Binding request with USERNAME `to:from`.
    fn check(to: &str) -> Vec<u8> {
        let username = format!("{to}:them");
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    const DTLS: &[u8] = &[22, 254, 253, 0, 0];

    #[test]
    fn a_check_goes_to_the_peer_of_its_ufrag_and_then_its_address_is_known() {
        let mut r = Routes::default();
        r.set_ufrag("", "aaaa", A);
        let from = addr("192.0.2.1:5000");
        assert_eq!(r.route(&check("aaaa"), from), Route::Check(A));
        assert_eq!(r.route(DTLS, from), Route::Unknown);
        r.confirm(from, A);
        assert_eq!(r.route(DTLS, from), Route::Known(A));
        assert_eq!(r.route(&check("zzzz"), from), Route::Unknown);
    }

    #[test]
    fn an_announced_address_is_expected_but_never_taken_from_another_peer() {
        let mut r = Routes::default();
        let shared = addr("192.0.2.9:3478");
        r.expect(shared, A);
        r.expect(shared, B);
        assert_eq!(r.route(DTLS, shared), Route::Known(A));
    }

    #[test]
    fn a_new_ufrag_replaces_the_old_one() {
        let mut r = Routes::default();
        r.set_ufrag("", "old1", A);
        r.set_ufrag("old1", "new2", A);
        let from = addr("192.0.2.1:5000");
        assert_eq!(r.route(&check("old1"), from), Route::Unknown);
        assert_eq!(r.route(&check("new2"), from), Route::Check(A));
    }

    #[test]
    fn a_forgotten_peer_is_routed_nothing() {
        let mut r = Routes::default();
        let from = addr("192.0.2.1:5000");
        r.set_ufrag("", "aaaa", A);
        r.confirm(from, A);
        r.set_ufrag("", "bbbb", B);
        r.forget(A, "aaaa");
        assert_eq!(r.route(&check("aaaa"), from), Route::Unknown);
        assert_eq!(r.route(DTLS, from), Route::Unknown);
        assert_eq!(r.route(&check("bbbb"), from), Route::Check(B));
    }
}
