//! Server-reflexive and relay candidates: one STUN/TURN client (webrtc-rs's sans-IO
//! `turn::client`) per ICE server URL. UDP clients share the session's single UDP socket;
//! `turn:…?transport=tcp` and `turns:` clients each own one TCP or TLS stream
//! ([`super::stream`]), for networks that block UDP.
//!
//! A TURN allocation belongs to the session, not to a peer: every peer connection gets the
//! same relay candidate, and data for all of them flows through the one allocation. The
//! client refreshes the allocation and permissions by itself; we create a permission for
//! each peer address we relay to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use web_time::Instant;

use bytes::BytesMut;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event as TurnEvent};
use rustls_pki_types::ServerName;
use squadlink_protocol::IceServer;
use tokio::sync::mpsc;

use super::relay::StreamEvent;
use super::stream::{StreamLink, tls_config};
use crate::event::RelayTransport;

/// What an ICE server gave us, or failed to.
#[derive(Debug)]
pub(crate) enum Gathered {
    /// Our address as the server sees it (a server-reflexive candidate).
    Reflexive(SocketAddr),
    /// A relayed address on a TURN server.
    Relayed(SocketAddr),
    /// Data a peer sent to our relayed address.
    Data {
        relayed: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    },
    /// The server could not be used; the message says why and what to check.
    Failed(String),
}

pub(crate) struct Gatherer {
    pub(crate) server: SocketAddr,
    url: String,
    client: Client,
    turn: bool,
    pub(crate) transport: RelayTransport,
    /// The TCP/TLS stream, for those transports.
    link: Option<StreamLink>,
    /// Tags this gatherer's stream events.
    pub(crate) id: u64,
    pub(crate) relayed: Option<SocketAddr>,
    /// Gave up (reported once).
    pub(crate) failed: bool,
}

/// What the gatherers need besides the resolved servers.
pub(crate) struct GatherContext<'a> {
    pub(crate) local: SocketAddr,
    /// Extra PEM root certificates for `turns:` servers.
    pub(crate) tls_roots: &'a [Vec<u8>],
    /// Where stream gatherers send what they read.
    pub(crate) streams: mpsc::UnboundedSender<(u64, StreamEvent)>,
}

/// One usable ICE server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    turn: bool,
    transport: RelayTransport,
    host: String,
    hostport: String,
}

/// How long resolving a server name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A usable URL: `stun:` (UDP), `turn:` over UDP or `?transport=tcp`, or `turns:` (TLS
/// over TCP). Others (`stuns:`, DTLS) are `None`.
pub(crate) fn parse_url(url: &str) -> Option<ParsedUrl> {
    let (turn, tls, rest) = if let Some(r) = url.strip_prefix("turns:") {
        (true, true, r)
    } else if let Some(r) = url.strip_prefix("turn:") {
        (true, false, r)
    } else if let Some(r) = url.strip_prefix("stun:") {
        (false, false, r)
    } else {
        return None;
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let tcp = query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("transport=tcp"));
    let udp = query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("transport=udp"));
    let transport = match (turn, tls, tcp, udp) {
        (_, true, _, true) => return None, // TURN over DTLS
        (_, true, _, false) => RelayTransport::Tls,
        (true, false, true, _) => RelayTransport::Tcp,
        (false, _, true, _) => return None, // STUN over TCP finds no UDP mapping
        _ => RelayTransport::Udp,
    };
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']');
    let (host, hostport) = if has_port {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
        (host.to_string(), hostport.to_string())
    } else {
        let port = if tls { 5349 } else { 3478 };
        (hostport.to_string(), format!("{hostport}:{port}"))
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some(ParsedUrl {
        turn,
        transport,
        host,
        hostport,
    })
}

/// One ICE server URL with its address looked up: what [`Gatherer::from_resolved`] needs.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    url: String,
    parsed: ParsedUrl,
    creds: (Option<String>, Option<String>),
    addr: SocketAddr,
}

/// Looks up the address of every usable URL of `servers`, TURN URLs first (see
/// [`Gatherer::from_resolved`]); unusable and unresolvable ones are reported, not fatal.
/// DNS can be slow, so this runs beside the network loop, never inside it; each lookup
/// waits at most 3 s.
pub(crate) async fn resolve(
    servers: Vec<IceServer>,
    relay_only: bool,
    ipv4: bool,
) -> (Vec<Resolved>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let ordered = servers
        .iter()
        .flat_map(|s| s.urls.iter().map(move |u| (s, u)))
        .filter_map(|(s, u)| parse_url(u).map(|p| (s, u, p)));
    let (turn, stun): (Vec<_>, Vec<_>) = ordered.partition(|(_, _, p)| p.turn);
    for (server, url, parsed) in turn.into_iter().chain(stun) {
        if relay_only && !parsed.turn {
            continue;
        }
        let creds = (server.username.clone(), server.credential.clone());
        if parsed.turn && (creds.0.is_none() || creds.1.is_none()) {
            problems.push(format!(
                "{url}: TURN URL without username/credential, skipped"
            ));
            continue;
        }
        let looked_up = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host(parsed.hostport.clone()),
        )
        .await;
        let addr = match looked_up {
            Ok(Ok(mut addrs)) => addrs.find(|a| a.is_ipv4() == ipv4),
            _ => None,
        };
        let Some(addr) = addr else {
            problems.push(format!("{url}: cannot resolve {}", parsed.hostport));
            continue;
        };
        out.push(Resolved {
            url: url.clone(),
            parsed,
            creds,
            addr,
        });
    }
    (out, problems)
}

impl Gatherer {
    /// Clients for every resolved URL, in order; what cannot start is reported, not fatal.
    /// One UDP client per server address: a TURN client also finds the server-reflexive
    /// address, and two clients on one 5-tuple would steal each other's responses (and
    /// coturn allows one allocation per 5-tuple), so a STUN URL whose server a TURN URL
    /// already covers is skipped.
    pub(crate) fn from_resolved(
        resolved: Vec<Resolved>,
        ctx: &GatherContext<'_>,
        now: Instant,
    ) -> (Vec<Gatherer>, Vec<String>) {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let provider = match rtc::crypto::default_provider() {
            Ok(p) => p,
            Err(e) => return (out, vec![format!("no crypto provider for STUN/TURN: {e}")]),
        };
        let mut tls: Option<Arc<rustls::ClientConfig>> = None;
        let mut udp_servers: Vec<SocketAddr> = Vec::new();
        for Resolved {
            url,
            parsed,
            creds,
            addr,
        } in resolved
        {
            if parsed.transport == RelayTransport::Udp {
                if udp_servers.contains(&addr) {
                    tracing::debug!(%url, "server already used over UDP by another URL");
                    continue;
                }
                udp_servers.push(addr);
            }
            let link = match parsed.transport {
                RelayTransport::Udp => None,
                RelayTransport::Tcp => Some(None),
                RelayTransport::Tls => {
                    let config = match &tls {
                        Some(c) => Arc::clone(c),
                        None => match tls_config(ctx.tls_roots) {
                            Ok(c) => Arc::clone(tls.insert(c)),
                            Err(e) => {
                                problems.push(format!("{url}: {e}"));
                                continue;
                            }
                        },
                    };
                    let Ok(name) = ServerName::try_from(parsed.host.clone()) else {
                        problems.push(format!(
                            "{url}: {} is not a valid TLS server name",
                            parsed.host
                        ));
                        continue;
                    };
                    Some(Some((name, config)))
                }
            };
            let id = out.len() as u64;
            let link = link.map(|tls| StreamLink::spawn(id, addr, tls, ctx.streams.clone()));
            let started = Self::start(
                &url,
                addr,
                (parsed.turn, parsed.transport),
                creds,
                ctx.local,
                Arc::clone(&provider),
                now,
            );
            match started {
                Ok(mut g) => {
                    g.link = link;
                    g.id = id;
                    out.push(g);
                }
                Err(e) => problems.push(format!("{url}: {e}")),
            }
        }
        (out, problems)
    }

    fn start(
        url: &str,
        server: SocketAddr,
        (turn, transport): (bool, RelayTransport),
        (username, password): (Option<String>, Option<String>),
        local: SocketAddr,
        provider: Arc<dyn rtc::crypto::RTCCryptoProvider>,
        now: Instant,
    ) -> Result<Self, rtc::shared::error::Error> {
        let config = ClientConfig {
            stun_serv_addr: server.to_string(),
            turn_serv_addr: if turn {
                server.to_string()
            } else {
                String::new()
            },
            local_addr: local,
            transport_protocol: if transport == RelayTransport::Udp {
                TransportProtocol::UDP
            } else {
                TransportProtocol::TCP
            },
            username: username.unwrap_or_default(),
            password: password.unwrap_or_default(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            allocation_refresh_interval_cap: None,
        };
        let mut client = Client::new(config, provider)?;
        // Over a stream, a Binding would only find our TCP mapping: no use to UDP ICE.
        if transport == RelayTransport::Udp {
            client.send_binding_request(now)?;
        }
        if turn {
            client.allocate(now)?;
        }
        Ok(Self {
            server,
            url: url.to_string(),
            client,
            turn,
            transport,
            link: None,
            id: 0,
            relayed: None,
            failed: false,
        })
    }

    pub(crate) fn is_turn(&self) -> bool {
        self.turn
    }

    /// The server's address.
    pub(crate) fn server(&self) -> SocketAddr {
        self.server
    }

    /// How we reach the server.
    pub(crate) fn transport(&self) -> RelayTransport {
        self.transport
    }

    /// Tags this gatherer's stream events.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Our relayed address on the server, once allocated.
    pub(crate) fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Whether it gave up (reported once).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// It gave up.
    pub(crate) fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// The URL this gatherer was made from.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Takes the stream to this gatherer's server (TCP and TLS): the I/O shell keeps it
    /// and writes what the gatherer queues for it.
    pub(crate) fn take_link(&mut self) -> Option<StreamLink> {
        self.link.take()
    }

    /// Whether datagrams from `from` on the UDP socket are this gatherer's.
    pub(crate) fn owns_udp_from(&self, from: SocketAddr) -> bool {
        self.transport == RelayTransport::Udp && self.server == from
    }

    pub(crate) fn handle_read(&mut self, data: &[u8], local: SocketAddr, now: Instant) {
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: self.server,
                ecn: None,
                transport_protocol: if self.transport == RelayTransport::Udp {
                    TransportProtocol::UDP
                } else {
                    TransportProtocol::TCP
                },
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = self.client.handle_read(input) {
            tracing::debug!(%e, server = %self.server, "TURN/STUN datagram rejected");
        }
    }

    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.client.handle_timeout(now) {
            tracing::debug!(%e, server = %self.server, "TURN/STUN timer");
        }
    }

    /// Datagrams the client wants sent (all to its server).
    pub(crate) fn poll_write(&mut self) -> Option<BytesMut> {
        self.client.poll_write().map(|t| t.message)
    }

    /// What happened since the last call.
    pub(crate) fn poll_gathered(&mut self) -> Option<Gathered> {
        loop {
            let event = self.client.poll_event()?;
            match event {
                TurnEvent::BindingResponse(_, addr) => return Some(Gathered::Reflexive(addr)),
                TurnEvent::AllocateResponse(_, relayed) => {
                    self.relayed = Some(relayed);
                    return Some(Gathered::Relayed(relayed));
                }
                TurnEvent::AllocateError(_, e) => {
                    return Some(Gathered::Failed(format!(
                        "TURN allocation at {} failed: {e} (check the TURN secret shared by the matchmaker and coturn, and the server's clock)",
                        self.url
                    )));
                }
                TurnEvent::DataIndicationOrChannelData(_, from, data) => {
                    if let Some(relayed) = self.relayed {
                        return Some(Gathered::Data {
                            relayed,
                            from,
                            data,
                        });
                    }
                }
                TurnEvent::TransactionTimeout(_) if self.turn && self.relayed.is_none() => {
                    return Some(Gathered::Failed(format!(
                        "TURN server {} did not answer (is it running and reachable over {}?)",
                        self.url,
                        self.transport.name().to_uppercase()
                    )));
                }
                TurnEvent::CreatePermissionError(_, e) => {
                    tracing::debug!(%e, url = %self.url, "TURN permission refused");
                }
                _ => {}
            }
        }
    }

    /// Sends `data` from our relayed address to `to`, asking for a permission first if
    /// needed (the datagram is then dropped; ICE and SCTP retransmit).
    pub(crate) fn relay_send(&mut self, now: Instant, data: &[u8], to: SocketAddr) {
        let Some(relayed) = self.relayed else { return };
        let sent = self
            .client
            .relay(relayed)
            .and_then(|mut r| r.send_to(now, data, to));
        if let Err(rtc::shared::error::Error::ErrNoPermission) = sent {
            self.permit(now, to);
        } else if let Err(e) = sent {
            tracing::trace!(%e, %to, "relay send failed");
        }
    }

    /// Asks the server to let `peer` talk to our relayed address (idempotent).
    pub(crate) fn permit(&mut self, now: Instant, peer: SocketAddr) {
        let Some(relayed) = self.relayed else { return };
        if let Err(e) = self
            .client
            .relay(relayed)
            .and_then(|mut r| r.create_permission(now, peer))
        {
            tracing::debug!(%e, %peer, "TURN permission request failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Option<(bool, RelayTransport, String)> {
        parse_url(url).map(|p| (p.turn, p.transport, p.hostport))
    }

    #[test]
    fn urls() {
        use RelayTransport::*;
        assert_eq!(
            parsed("stun:127.0.0.1:3478"),
            Some((false, Udp, "127.0.0.1:3478".into()))
        );
        assert_eq!(
            parsed("turn:turn.example.com?transport=udp"),
            Some((true, Udp, "turn.example.com:3478".into()))
        );
        assert_eq!(
            parsed("turn:turn.example.com:3478?transport=tcp"),
            Some((true, Tcp, "turn.example.com:3478".into()))
        );
        assert_eq!(
            parsed("turns:turn.example.com"),
            Some((true, Tls, "turn.example.com:5349".into()))
        );
        assert_eq!(
            parse_url("turns:[::1]:443?transport=tcp").map(|p| p.host),
            Some("::1".into())
        );
        assert_eq!(parsed("turns:turn.example.com?transport=udp"), None);
        assert_eq!(parsed("stun:turn.example.com?transport=tcp"), None);
        assert_eq!(parsed("http://x"), None);
    }
}
