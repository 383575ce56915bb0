//! Small pieces of the socket layer: demultiplexing datagrams of many peer connections on
//! one socket, parsing candidates, choosing host addresses, and the simulated-loss stage.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::event::CandidateKind;
use crate::stun;

/// Socket buffers we ask the kernel for. Bursts (a reliable transfer, a full lobby's
/// snapshots) overflow the default ~208 KiB receive buffer on loopback and fast links, and
/// every overflow is a loss SCTP must recover from. The kernel caps these at
/// `net.core.rmem_max` / `wmem_max`; asking for more is harmless.
#[cfg(not(target_arch = "wasm32"))]
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the session's UDP socket (native: in the browser the page owns the network) with large kernel buffers, non-blocking, for tokio.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%e, "could not enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%e, "could not enlarge the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Whether a connectivity check from `from` would make `rtc` learn a peer's TURN relay
/// address as peer-reflexive, ahead of the relay candidate still on its way through the
/// matchmaker. Such a pair skips the relay wait (peer-reflexive pairs are nominated at once)
/// and can beat a direct path that needs both NATs punched: a lab run once connected two
/// restricted cones through the relay that way. Dropping the check costs little: the peer
/// repeats it every 25 ms, and once the candidate is here the pair is a relay pair and
/// waits its turn.
///
/// `from` counts as a relay's when it is not a candidate the peer announced (`known`), its
/// IP is in `relay_ips` (TURN servers we use, relay candidates peers announced), and it is
/// neither one of our own host IPs (everything on one machine) nor the IP of a host or
/// server-reflexive candidate of the peer.
pub(crate) fn relay_in_disguise(
    from: SocketAddr,
    known: &HashMap<SocketAddr, CandidateKind>,
    own_hosts: &[SocketAddr],
    mut relay_ips: impl Iterator<Item = IpAddr>,
) -> bool {
    let ip = from.ip();
    !known.contains_key(&from)
        && !own_hosts.iter().any(|h| h.ip() == ip)
        && !known
            .iter()
            .any(|(a, t)| a.ip() == ip && *t != CandidateKind::Relay)
        && relay_ips.any(|r| r == ip)
}

/// From a STUN Binding request, the local ufrag it is addressed to: the part of USERNAME
/// before the colon (RFC 8445 §7.2.2: `<receiver ufrag>:<sender ufrag>`). `None` for
/// anything that is not a well-formed Binding request with a USERNAME.
pub(crate) fn stun_request_ufrag(buf: &[u8]) -> Option<&str> {
    const USERNAME: u16 = 0x0006;
    let message = stun::Message::parse(buf)?;
    if message.kind != stun::BINDING_REQUEST {
        return None;
    }
    let (_, value) = message.attributes().find(|(kind, _)| *kind == USERNAME)?;
    std::str::from_utf8(value).ok()?.split(':').next()
}

/// What a candidate line offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CandidateLine {
    /// A UDP candidate at an IP address, with its type.
    Udp(SocketAddr, CandidateKind),
    /// A UDP host candidate behind an mDNS name (`….local`: a browser hiding its
    /// address), with its port. The address itself turns up in the peer's checks
    /// (peer-reflexive); the port tells that it is this host candidate.
    Hidden {
        /// The mDNS name.
        name: String,
        /// Its port.
        port: u16,
    },
    /// A TCP candidate: unused, the SDK's ICE runs over UDP.
    Tcp,
}

/// What a candidate line (`candidate:F C udp P ADDRESS PORT typ TYPE …`) offers; `None`
/// when it is not a well-formed candidate line.
pub(crate) fn parse_candidate(line: &str) -> Option<CandidateLine> {
    let line = line.strip_prefix("a=").unwrap_or(line);
    let mut fields = line.split_ascii_whitespace();
    let _foundation = fields.next()?;
    let _component = fields.next()?;
    let protocol = fields.next()?;
    let _priority = fields.next()?;
    let address = fields.next()?;
    let port: u16 = fields.next()?.parse().ok()?;
    if fields.next()? != "typ" {
        return None;
    }
    let kind = match fields.next()? {
        "host" => CandidateKind::Host,
        "srflx" => CandidateKind::Srflx,
        "prflx" => CandidateKind::Prflx,
        "relay" => CandidateKind::Relay,
        _ => return None,
    };
    if protocol.eq_ignore_ascii_case("tcp") {
        return Some(CandidateLine::Tcp);
    }
    if !protocol.eq_ignore_ascii_case("udp") {
        return None;
    }
    match address.parse::<IpAddr>() {
        Ok(ip) => Some(CandidateLine::Udp(SocketAddr::new(ip, port), kind)),
        Err(_) if kind == CandidateKind::Host && is_mdns_name(address) => {
            Some(CandidateLine::Hidden {
                name: address.to_string(),
                port,
            })
        }
        Err(_) => None,
    }
}

/// Whether `name` is an mDNS host name (RFC 6762: a name under `.local`), as browsers put
/// in place of their host addresses.
fn is_mdns_name(name: &str) -> bool {
    name.len() > ".local".len()
        && name
            .get(name.len() - ".local".len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".local"))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `ip` can be a host address of a peer on our own machine or network (loopback,
/// private, link-local or unique-local): where a hidden host candidate can really be.
pub(crate) fn is_local_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unique_local(),
    }
}

/// The addresses to announce as host candidates for a socket bound to `bound`: the bound
/// address itself, or for a wildcard bind every IPv4 interface address (loopback only when
/// there is nothing else). Native only.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn host_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default();
    if ips.is_empty() {
        ips.push(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

/// The local address a datagram from `from` most likely arrived on: among our host
/// addresses, the first of the same family and the same loopback-ness.
pub(crate) fn local_for(hosts: &[SocketAddr], from: SocketAddr) -> Option<SocketAddr> {
    hosts
        .iter()
        .find(|h| h.is_ipv4() == from.is_ipv4() && h.ip().is_loopback() == from.ip().is_loopback())
        .or_else(|| hosts.first())
        .copied()
}

/// Drops a fraction of datagrams at random (xorshift; for tests and demos of bad networks).
pub(crate) struct LossStage {
    threshold: u64,
    state: u64,
}

impl LossStage {
    pub(crate) fn new(fraction: f64) -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self {
            threshold: (fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// Whether it drops anything at all.
    pub(crate) fn is_lossless(&self) -> bool {
        self.threshold == 0
    }

    /// Whether to drop the next datagram.
    pub(crate) fn drop_next(&mut self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_check_from_an_unannounced_relay_address_is_held_back() {
        let turn: IpAddr = "203.0.113.1".parse().unwrap();
        let own = [addr("10.2.0.2:4000")];
        let mut known = HashMap::new();
        known.insert(addr("203.0.113.11:5000"), CandidateKind::Srflx);
        known.insert(addr("10.1.0.2:5000"), CandidateKind::Host);
        let from_relay = addr("203.0.113.1:50282");
        // The relay candidate has not come: held back.
        assert!(relay_in_disguise(
            from_relay,
            &known,
            &own,
            [turn].into_iter()
        ));
        // It has: a known relay pair, which waits its turn inside ICE.
        known.insert(from_relay, CandidateKind::Relay);
        assert!(!relay_in_disguise(
            from_relay,
            &known,
            &own,
            [turn].into_iter()
        ));
        // Another port on that relay, while we know the IP only from relay candidates
        // peers announced (the caller passes those IPs too); unknown IPs go through.
        let other_port = addr("203.0.113.1:50999");
        assert!(relay_in_disguise(
            other_port,
            &known,
            &own,
            [turn].into_iter()
        ));
        assert!(!relay_in_disguise(
            other_port,
            &known,
            &own,
            std::iter::empty()
        ));
        // A peer-reflexive address that is no relay's goes through (the answerer's check
        // routinely outruns its candidate).
        let prflx = addr("203.0.113.11:5001");
        assert!(!relay_in_disguise(prflx, &known, &own, [turn].into_iter()));
    }

    #[test]
    fn a_check_from_the_relay_machine_itself_goes_through() {
        let turn: IpAddr = "127.0.0.1".parse().unwrap();
        let known = HashMap::new();
        // Everything on one machine: the TURN server's IP is ours too.
        let own = [addr("127.0.0.1:4000")];
        assert!(!relay_in_disguise(
            addr("127.0.0.1:4001"),
            &known,
            &own,
            [turn].into_iter()
        ));
        // A peer that announced a host or srflx candidate on the TURN server's IP.
        let own = [addr("10.2.0.2:4000")];
        let mut known = HashMap::new();
        known.insert(addr("203.0.113.1:6000"), CandidateKind::Srflx);
        let turn: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(!relay_in_disguise(
            addr("203.0.113.1:6001"),
            &known,
            &own,
            [turn].into_iter()
        ));
    }

    #[test]
    fn parses_candidates() {
        assert_eq!(
            parse_candidate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"),
            Some(CandidateLine::Udp(
                "127.0.0.1:50000".parse().unwrap(),
                CandidateKind::Host
            ))
        );
        let relay = parse_candidate(
            "candidate:2 1 UDP 16777215 10.0.0.5 61000 typ relay raddr 0.0.0.0 rport 0",
        );
        assert!(matches!(
            relay,
            Some(CandidateLine::Udp(_, CandidateKind::Relay))
        ));
        for bad in [
            "",
            "candidate:1 1 udp 1 x 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ weird",
            "candidate:1 1 sctp 1 1.2.3.4 5 typ host",
            // A name that is not mDNS, and an mDNS name on a type other than host.
            "candidate:1 1 udp 1 example.com 5 typ host",
            "candidate:1 1 udp 1 a.local 5 typ srflx",
        ] {
            assert!(parse_candidate(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_mdns_host_candidate_is_hidden_and_a_tcp_one_is_tcp() {
        assert_eq!(
            parse_candidate(
                "candidate:3 1 udp 2113937151 5b0a7a49-1c5e-4f8e-9d2a-0c3b1f6e7a88.local 54321 typ host generation 0"
            ),
            Some(CandidateLine::Hidden {
                name: "5b0a7a49-1c5e-4f8e-9d2a-0c3b1f6e7a88.local".into(),
                port: 54321
            })
        );
        assert_eq!(
            parse_candidate("candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active"),
            Some(CandidateLine::Tcp)
        );
    }

    #[test]
    fn only_loopback_private_and_link_local_addresses_are_local_network() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_local_network(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_local_network(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn finds_the_ufrag_of_binding_requests_only() {
        // Binding request with USERNAME "abcd:efgh".
        let mut m = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        m.extend_from_slice(b"abcd:efgh\0\0\0");
        assert_eq!(stun_request_ufrag(&m), Some("abcd"));
        let mut response = m.clone();
        response[0] = 0x01;
        assert_eq!(stun_request_ufrag(&response), None);
        assert_eq!(stun_request_ufrag(&m[..25]), None);
        assert_eq!(stun_request_ufrag(&[23, 3, 3]), None);
    }

    #[test]
    fn loss_stage_drops_about_the_fraction() {
        let mut l = LossStage::new(0.1);
        let dropped = (0..100_000).filter(|_| l.drop_next()).count();
        assert!((8_000..12_000).contains(&dropped), "{dropped}");
        let mut none = LossStage::new(0.0);
        assert!(!(0..1000).any(|_| none.drop_next()));
    }
}
