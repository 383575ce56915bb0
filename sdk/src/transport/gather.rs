//! Server-reflexive and relay candidates: one STUN/TURN client (webrtc-rs's sans-IO
//! `turn::client`) per ICE server, all on the session's single UDP socket.
//!
//! A TURN allocation belongs to the session, not to a peer: every peer connection gets the
//! same relay candidate, and data for all of them flows through the one allocation. The
//! client refreshes the allocation and permissions and binds channels by itself; we create a
//! permission for each peer address we relay to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event as TurnEvent};
use squadlink_protocol::IceServer;

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
    pub(crate) relayed: Option<SocketAddr>,
}

/// How long resolving a server name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A usable URL: `stun:` or `turn:` over UDP. `turns:` and `?transport=tcp` are skipped
/// (TURN over TCP/TLS comes with the NAT work).
fn parse_url(url: &str) -> Option<(bool, String)> {
    let (turn, rest) = if let Some(r) = url.strip_prefix("turn:") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("stun:") {
        (false, r)
    } else {
        return None;
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("transport=tcp"))
    {
        return None;
    }
    let hostport = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:3478")
    };
    Some((turn, hostport))
}

impl Gatherer {
    /// Clients for every usable URL of `servers`; unusable ones are reported, not fatal.
    pub(crate) async fn from_servers(
        servers: &[IceServer],
        local: SocketAddr,
        relay_only: bool,
        now: Instant,
    ) -> (Vec<Gatherer>, Vec<String>) {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let provider = match rtc::crypto::default_provider() {
            Ok(p) => p,
            Err(e) => return (out, vec![format!("no crypto provider for STUN/TURN: {e}")]),
        };
        for server in servers {
            for url in &server.urls {
                let Some((turn, hostport)) = parse_url(url) else {
                    continue;
                };
                if relay_only && !turn {
                    continue;
                }
                let creds = (server.username.clone(), server.credential.clone());
                if turn && (creds.0.is_none() || creds.1.is_none()) {
                    problems.push(format!(
                        "{url}: TURN URL without username/credential, skipped"
                    ));
                    continue;
                }
                let resolved = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host(hostport.clone()),
                )
                .await;
                let addr = match resolved {
                    Ok(Ok(mut addrs)) => addrs.find(|a| a.is_ipv4() == local.is_ipv4()),
                    _ => None,
                };
                let Some(addr) = addr else {
                    problems.push(format!("{url}: cannot resolve {hostport}"));
                    continue;
                };
                match Self::start(url, addr, turn, creds, local, Arc::clone(&provider), now) {
                    Ok(g) => out.push(g),
                    Err(e) => problems.push(format!("{url}: {e}")),
                }
            }
        }
        (out, problems)
    }

    fn start(
        url: &str,
        server: SocketAddr,
        turn: bool,
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
            transport_protocol: TransportProtocol::UDP,
            username: username.unwrap_or_default(),
            password: password.unwrap_or_default(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            allocation_refresh_interval_cap: None,
        };
        let mut client = Client::new(config, provider)?;
        client.send_binding_request(now)?;
        if turn {
            client.allocate(now)?;
        }
        Ok(Self {
            server,
            url: url.to_string(),
            client,
            turn,
            relayed: None,
        })
    }

    pub(crate) fn is_turn(&self) -> bool {
        self.turn
    }

    pub(crate) fn handle_read(&mut self, data: &[u8], local: SocketAddr, now: Instant) {
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: self.server,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
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
                        "TURN server {} did not answer (is it running and reachable over UDP?)",
                        self.url
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

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("stun:127.0.0.1:3478"),
            Some((false, "127.0.0.1:3478".into()))
        );
        assert_eq!(
            parse_url("turn:turn.example.com?transport=udp"),
            Some((true, "turn.example.com:3478".into()))
        );
        assert_eq!(parse_url("turn:turn.example.com:3478?transport=tcp"), None);
        assert_eq!(parse_url("turns:turn.example.com:5349"), None);
        assert_eq!(parse_url("http://x"), None);
    }
}
