//! What kind of NAT is this machine behind? The behaviour-discovery tests of RFC 5780,
//! against a STUN server that has two addresses (coturn does, when it listens on two IPs).
//!
//! - **Mapping**: does our public address stay the same whoever we talk to? Endpoint-
//!   independent mapping lets two players punch a direct hole; address- or port-dependent
//!   mapping (a "symmetric" NAT) usually needs a TURN relay.
//! - **Filtering**: who may send to our public address? Endpoint-independent filtering
//!   ("full cone") accepts anyone; address-and-port-dependent filtering only those we have
//!   sent to.
//!
//! ```no_run
//! let report = squadlink::nat::probe("203.0.113.1:3478".parse().unwrap(), Default::default())?;
//! println!("mapping {:?}, filtering {:?}", report.mapping, report.filtering);
//! # Ok::<(), squadlink::nat::NatError>(())
//! ```
//!
//! The probe uses blocking sockets with a timeout on every wait: call it from a thread that
//! may block for a few seconds (at most `4 × attempts × timeout`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stun::{self, MAGIC};

/// How our public (mapped) address depends on where we send (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// No NAT: the server sees our own address.
    NoNat,
    /// One public address whatever the destination ("cone"): direct connections work.
    EndpointIndependent,
    /// A new public address per destination IP.
    AddressDependent,
    /// A new public address per destination IP and port ("symmetric"): expect a relay.
    AddressAndPortDependent,
}

/// Which senders can reach our public address (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filtering {
    /// Anyone ("full cone").
    EndpointIndependent,
    /// Any port of an IP we have sent to ("restricted cone").
    AddressDependent,
    /// Only the IP and port we have sent to ("port-restricted cone", and symmetric NATs).
    AddressAndPortDependent,
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatReport {
    /// Our socket's address.
    pub local: SocketAddr,
    /// Our address as the server's primary address saw it.
    pub mapped: SocketAddr,
    /// The server's alternate address (its OTHER-ADDRESS).
    pub other_server: SocketAddr,
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
}

impl NatReport {
    /// Whether two players behind NATs like this one can usually connect directly.
    pub fn direct_friendly(&self) -> bool {
        matches!(self.mapping, Mapping::NoNat | Mapping::EndpointIndependent)
    }
}

/// Why a probe could not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatError {
    /// No answer from the server at all: UDP is blocked, or the server is down.
    #[error(
        "no STUN answer from {server} within {secs:.1} s: outbound UDP looks blocked (TURN over TCP or TLS is then the only way out), or the server is not running"
    )]
    NoUdp {
        /// The server asked.
        server: SocketAddr,
        /// How long we waited.
        secs: f64,
    },
    /// The server answered but does not do RFC 5780 (no OTHER-ADDRESS).
    #[error(
        "{server} answers STUN but has no second address (OTHER-ADDRESS): give coturn two listening IPs to enable RFC 5780 NAT discovery"
    )]
    NoAlternate {
        /// The server asked.
        server: SocketAddr,
    },
    /// A socket error.
    #[error("socket error during the NAT probe: {0}")]
    Io(#[from] std::io::Error),
}

/// How patient the probe is.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Wait for each answer this long.
    pub timeout: Duration,
    /// Send each request this many times (UDP may lose one).
    pub attempts: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(400),
            attempts: 3,
        }
    }
}

/// Runs the RFC 5780 mapping and filtering tests against `server`.
pub fn probe(server: SocketAddr, settings: ProbeSettings) -> Result<NatReport, NatError> {
    let unspecified: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let sock = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    let local_ip = route_ip(server).unwrap_or(unspecified);
    let local = SocketAddr::new(local_ip, sock.local_addr()?.port());
    let no_udp = || NatError::NoUdp {
        server,
        secs: (settings.timeout * settings.attempts).as_secs_f64(),
    };

    // Filtering first, on a socket that has talked to the primary address only: a NAT that
    // remembers whom the host (rather than this one mapping) has sent to would otherwise let
    // the alternate address in, after the mapping tests below have contacted it.
    let fresh = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    let hello = transact(&fresh, server, 0, settings)?.ok_or_else(no_udp)?;
    // Without a second address the server cannot answer CHANGE-REQUEST tests honestly.
    hello.other.ok_or(NatError::NoAlternate { server })?;
    let filtering = if transact(&fresh, server, CHANGE_IP | CHANGE_PORT, settings)?.is_some() {
        Filtering::EndpointIndependent
    } else if transact(&fresh, server, CHANGE_PORT, settings)?.is_some() {
        Filtering::AddressDependent
    } else {
        Filtering::AddressAndPortDependent
    };

    // Mapping, test I: the primary address.
    let first = transact(&sock, server, 0, settings)?.ok_or_else(no_udp)?;
    let other = first.other.ok_or(NatError::NoAlternate { server })?;
    let mapping = if first.mapped == local {
        Mapping::NoNat
    } else {
        // Test II: the alternate IP, primary port.
        let alt_ip = SocketAddr::new(other.ip(), server.port());
        match transact(&sock, alt_ip, 0, settings)? {
            Some(r) if r.mapped == first.mapped => Mapping::EndpointIndependent,
            Some(second) => {
                // Test III: the alternate IP and port.
                match transact(&sock, other, 0, settings)? {
                    Some(third) if third.mapped == second.mapped => Mapping::AddressDependent,
                    _ => Mapping::AddressAndPortDependent,
                }
            }
            None => Mapping::AddressAndPortDependent,
        }
    };

    Ok(NatReport {
        local,
        mapped: first.mapped,
        other_server: other,
        mapping,
        filtering,
    })
}

/// The local IP the kernel routes `to` from (no packet is sent).
fn route_ip(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

const CHANGE_IP: u32 = 0x04;
const CHANGE_PORT: u32 = 0x02;
const ATTR_MAPPED: u16 = 0x0001;
const ATTR_CHANGE_REQUEST: u16 = 0x0003;
const ATTR_CHANGED_ADDRESS: u16 = 0x0005;
const ATTR_XOR_MAPPED: u16 = 0x0020;
const ATTR_OTHER_ADDRESS: u16 = 0x802C;

/// One Binding response, as far as the probe needs it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    mapped: SocketAddr,
    other: Option<SocketAddr>,
}

/// Sends a Binding request (with CHANGE-REQUEST `change` if not 0) and waits for its answer;
/// `None` if none came.
fn transact(
    sock: &UdpSocket,
    to: SocketAddr,
    change: u32,
    settings: ProbeSettings,
) -> std::io::Result<Option<Binding>> {
    let mut tid = [0u8; 12];
    if getrandom::fill(&mut tid).is_err() {
        // Uniqueness within this probe is all that matters.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (t, n) in tid.iter_mut().zip(nanos.to_le_bytes()) {
            *t = n;
        }
    }
    let request = binding_request(&tid, change);
    let mut buf = [0u8; 1500];
    for _ in 0..settings.attempts.max(1) {
        sock.send_to(&request, to)?;
        let deadline = Instant::now() + settings.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(b) = buf.get(..n).and_then(|m| parse_response(m, &tid)) {
                        return Ok(Some(b));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // An ICMP "port unreachable" from an earlier send: keep waiting.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

pub(crate) fn binding_request(tid: &[u8; 12], change: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(28);
    m.extend_from_slice(&stun::BINDING_REQUEST.to_be_bytes());
    let len: u16 = if change == 0 { 0 } else { 8 };
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(tid);
    if change != 0 {
        m.extend_from_slice(&ATTR_CHANGE_REQUEST.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&change.to_be_bytes());
    }
    m
}

/// A Binding success response to transaction `tid`; anything else is `None`.
pub(crate) fn parse_response(m: &[u8], tid: &[u8; 12]) -> Option<Binding> {
    let message = stun::Message::parse(m)?;
    if message.kind != stun::BINDING_SUCCESS || message.transaction != tid {
        return None;
    }
    let (mut xor, mut plain, mut other) = (None, None, None);
    for (kind, value) in message.attributes() {
        match kind {
            ATTR_XOR_MAPPED => xor = address(value, Some(tid)),
            ATTR_MAPPED => plain = address(value, None),
            ATTR_OTHER_ADDRESS | ATTR_CHANGED_ADDRESS => other = other.or(address(value, None)),
            _ => {}
        }
    }
    Some(Binding {
        mapped: xor.or(plain)?,
        other,
    })
}

/// A (XOR-)MAPPED-ADDRESS style value; XORed with the magic cookie (and `tid` for IPv6)
/// when `xor_tid` is given.
fn address(v: &[u8], xor_tid: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC.to_be_bytes());
    if let Some(tid) = xor_tid {
        port ^= (MAGIC >> 16) as u16;
        key[4..].copy_from_slice(tid);
    }
    let xored = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .zip(key.iter())
            .map(|(b, k)| if xor_tid.is_some() { b ^ k } else { *b })
            .collect()
    };
    let ip: IpAddr = match family {
        0x01 => {
            let b: [u8; 4] = xored(v.get(4..8)?).try_into().ok()?;
            Ipv4Addr::from(b).into()
        }
        0x02 => {
            let b: [u8; 16] = xored(v.get(4..20)?).try_into().ok()?;
            Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn response(tid: &[u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let body: Vec<u8> = attrs
            .iter()
            .flat_map(|(k, v)| {
                let mut a = k.to_be_bytes().to_vec();
                a.extend_from_slice(&(v.len() as u16).to_be_bytes());
                a.extend_from_slice(v);
                a.resize(4 + v.len().div_ceil(4) * 4, 0);
                a
            })
            .collect();
        let mut m = vec![0x01, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC.to_be_bytes());
        m.extend_from_slice(tid);
        m.extend(body);
        m
    }

    fn v4(ip: [u8; 4], port: u16, xor: bool) -> Vec<u8> {
        let (mut ip, mut port) = (ip, port);
        if xor {
            port ^= 0x2112;
            for (b, k) in ip.iter_mut().zip(MAGIC.to_be_bytes()) {
                *b ^= k;
            }
        }
        let mut v = vec![0, 1];
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v
    }

    #[test]
    fn parses_xor_mapped_and_other_address() {
        let tid = [7u8; 12];
        let m = response(
            &tid,
            &[
                (0x8022, b"coturn".to_vec()),
                (ATTR_XOR_MAPPED, v4([203, 0, 113, 11], 40000, true)),
                (ATTR_OTHER_ADDRESS, v4([203, 0, 113, 2], 3479, false)),
            ],
        );
        let b = parse_response(&m, &tid).unwrap();
        assert_eq!(
            b.mapped,
            "203.0.113.11:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(b.other, Some("203.0.113.2:3479".parse().unwrap()));
    }

    #[test]
    fn rejects_other_transactions_and_garbage() {
        let tid = [7u8; 12];
        let m = response(&tid, &[(ATTR_XOR_MAPPED, v4([1, 2, 3, 4], 5, true))]);
        assert!(parse_response(&m, &[8u8; 12]).is_none());
        for cut in 0..m.len() {
            // Truncated messages are rejected, never read past their end.
            let _ = parse_response(&m[..cut], &tid);
        }
        let mut lying = m.clone();
        lying[3] = 200; // claims more attributes than there are
        assert!(parse_response(&lying, &tid).is_none());
        assert!(parse_response(&[0xff; 64], &tid).is_none());
    }

    #[test]
    fn request_carries_change_request() {
        let r = binding_request(&[1; 12], CHANGE_IP | CHANGE_PORT);
        assert_eq!(&r[..4], &[0, 1, 0, 8]);
        assert_eq!(&r[20..], &[0, 3, 0, 4, 0, 0, 0, 6]);
        assert_eq!(binding_request(&[1; 12], 0).len(), 20);
    }

    #[test]
    fn silent_server_is_no_udp() {
        // A bound socket that never answers, on loopback.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = probe(
            silent.local_addr().unwrap(),
            ProbeSettings {
                timeout: Duration::from_millis(50),
                attempts: 2,
            },
        )
        .unwrap_err();
        assert!(matches!(err, NatError::NoUdp { .. }), "{err}");
    }
}
