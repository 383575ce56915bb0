//! The browser's stand-in for our STUN/TURN clients (`gather.rs` on native targets): there
//! are none. The page's `RTCPeerConnection` gathers its own candidates from the ICE servers
//! it is given (`PeerSettings::ice_servers`), so `Candidates` never holds a client here, and
//! a [`Gatherer`] cannot be made: the type has no values.

use std::net::SocketAddr;

use bytes::BytesMut;
use web_time::Instant;

use crate::event::RelayTransport;

/// What an ICE server gave us (never, in the browser).
#[derive(Debug)]
pub(crate) enum Gathered {
    Reflexive(SocketAddr),
    Relayed(SocketAddr),
    Data {
        relayed: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    },
    Failed(String),
}

/// A STUN/TURN client of ours: none exists in the browser.
pub(crate) enum Gatherer {}

impl Gatherer {
    pub(crate) fn is_turn(&self) -> bool {
        match *self {}
    }
    pub(crate) fn server(&self) -> SocketAddr {
        match *self {}
    }
    pub(crate) fn transport(&self) -> RelayTransport {
        match *self {}
    }
    pub(crate) fn id(&self) -> u64 {
        match *self {}
    }
    pub(crate) fn relayed(&self) -> Option<SocketAddr> {
        match *self {}
    }
    pub(crate) fn failed(&self) -> bool {
        match *self {}
    }
    pub(crate) fn mark_failed(&mut self) {
        match *self {}
    }
    pub(crate) fn url(&self) -> &str {
        match *self {}
    }
    pub(crate) fn owns_udp_from(&self, _from: SocketAddr) -> bool {
        match *self {}
    }
    pub(crate) fn handle_read(&mut self, _data: &[u8], _local: SocketAddr, _now: Instant) {
        match *self {}
    }
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        match *self {}
    }
    pub(crate) fn handle_timeout(&mut self, _now: Instant) {
        match *self {}
    }
    pub(crate) fn poll_write(&mut self) -> Option<BytesMut> {
        match *self {}
    }
    pub(crate) fn poll_gathered(&mut self) -> Option<Gathered> {
        match *self {}
    }
    pub(crate) fn relay_send(&mut self, _now: Instant, _data: &[u8], _to: SocketAddr) {
        match *self {}
    }
    pub(crate) fn permit(&mut self, _now: Instant, _peer: SocketAddr) {
        match *self {}
    }
}
