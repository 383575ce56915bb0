//! A deliberately small TURN-over-UDP client (RFC 5766 / 8656) for the coturn tests, written
//! independently of the matchmaker so it checks the credentials against coturn rather than
//! against our own understanding of them.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CREATE_PERMISSION: u16 = 0x0008;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;

const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

pub struct Msg {
    pub kind: u16,
    pub attrs: Vec<(u16, Vec<u8>)>,
}

impl Msg {
    pub fn attr(&self, t: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v.as_slice())
    }

    pub fn error_code(&self) -> Option<u16> {
        let v = self.attr(ERROR_CODE)?;
        Some(u16::from(v[2]) * 100 + u16::from(v[3]))
    }
}

fn tid() -> [u8; 12] {
    let mut t = [0u8; 12];
    getrandom::fill(&mut t).unwrap();
    t
}

fn encode(kind: u16, tid: &[u8; 12], attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&kind.to_be_bytes());
    let len = body.len() + if key.is_some() { 24 } else { 0 };
    msg.extend_from_slice(&(len as u16).to_be_bytes());
    msg.extend_from_slice(&MAGIC.to_be_bytes());
    msg.extend_from_slice(tid);
    msg.extend_from_slice(&body);
    if let Some(key) = key {
        let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
        mac.update(&msg);
        let sum = mac.finalize().into_bytes();
        msg.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        msg.extend_from_slice(&20u16.to_be_bytes());
        msg.extend_from_slice(&sum);
    }
    msg
}

pub fn decode(buf: &[u8]) -> Option<Msg> {
    if buf.len() < 20 || u32::from_be_bytes(buf[4..8].try_into().ok()?) != MAGIC {
        return None;
    }
    let kind = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(20..20 + len)?;
    let mut attrs = Vec::new();
    let mut i = 0;
    while i + 4 <= body.len() {
        let t = u16::from_be_bytes([body[i], body[i + 1]]);
        let l = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        attrs.push((t, body.get(i + 4..i + 4 + l)?.to_vec()));
        i += 4 + l.div_ceil(4) * 4;
    }
    Some(Msg { kind, attrs })
}

fn xor_addr(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(v4.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    v.extend_from_slice(&(u32::from(*v4.ip()) ^ MAGIC).to_be_bytes());
    v
}

pub fn parse_xor_addr(v: &[u8]) -> Option<SocketAddr> {
    if v.len() < 8 || v[1] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
}

/// The result of an allocation attempt, as coturn answered it.
#[derive(Debug, PartialEq, Eq)]
pub enum Allocation {
    Relayed(SocketAddr),
    Refused(u16),
}

pub struct TurnClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    username: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Vec<u8>,
}

impl TurnClient {
    pub fn new(server: SocketAddr, username: &str) -> TurnClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        TurnClient {
            sock,
            server,
            username: username.into(),
            realm: Vec::new(),
            nonce: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Sends a request and waits for the response with the same transaction id.
    fn transact(&self, kind: u16, attrs: &[(u16, Vec<u8>)], auth: bool) -> Msg {
        let t = tid();
        let mut attrs = attrs.to_vec();
        if auth {
            attrs.push((USERNAME, self.username.as_bytes().to_vec()));
            attrs.push((REALM, self.realm.clone()));
            attrs.push((NONCE, self.nonce.clone()));
        }
        let msg = encode(kind, &t, &attrs, auth.then_some(self.key.as_slice()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            self.sock.send_to(&msg, self.server).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if buf[8..20] == t {
                return decode(&buf[..n]).expect("a STUN response");
            }
        }
        panic!("no TURN response from {}", self.server);
    }

    /// Allocates a UDP relay with the long-term credential (username, password).
    pub fn allocate(&mut self, password: &str) -> Allocation {
        let transport = (REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
        let first = self.transact(ALLOCATE, std::slice::from_ref(&transport), false);
        assert_eq!(
            first.kind,
            ALLOCATE | ERROR,
            "an unauthenticated allocate is challenged"
        );
        assert_eq!(first.error_code(), Some(401));
        self.realm = first.attr(REALM).expect("realm").to_vec();
        self.nonce = first.attr(NONCE).expect("nonce").to_vec();
        let mut h = Md5::new();
        h.update(format!(
            "{}:{}:{password}",
            self.username,
            String::from_utf8_lossy(&self.realm)
        ));
        self.key = h.finalize().to_vec();
        let resp = self.transact(ALLOCATE, &[transport], true);
        if resp.kind == ALLOCATE | SUCCESS {
            let relayed = parse_xor_addr(resp.attr(XOR_RELAYED_ADDRESS).expect("relayed address"));
            Allocation::Relayed(relayed.expect("IPv4 relayed address"))
        } else {
            Allocation::Refused(resp.error_code().unwrap_or(0))
        }
    }

    pub fn permit(&self, peer: SocketAddr) -> bool {
        let resp = self.transact(
            CREATE_PERMISSION,
            &[(XOR_PEER_ADDRESS, xor_addr(peer))],
            true,
        );
        resp.kind == CREATE_PERMISSION | SUCCESS
    }

    pub fn send_to_peer(&self, peer: SocketAddr, data: &[u8]) {
        let msg = encode(
            SEND_INDICATION,
            &tid(),
            &[(XOR_PEER_ADDRESS, xor_addr(peer)), (DATA, data.to_vec())],
            None,
        );
        self.sock.send_to(&msg, self.server).unwrap();
    }

    /// Waits for a Data indication; returns (peer, payload).
    pub fn recv_from_peer(&self) -> Option<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let msg = decode(&buf[..n])?;
            if msg.kind == DATA_INDICATION {
                let peer = parse_xor_addr(msg.attr(XOR_PEER_ADDRESS)?)?;
                return Some((peer, msg.attr(DATA)?.to_vec()));
            }
        }
        None
    }
}
