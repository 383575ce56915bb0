//! Holds back repeated DTLS handshake flights from `rtc`, whose handshake stalls on them.
//!
//! `rtc` 0.21.1's DTLS state machine (`rtc-dtls`, `Handshaker::wait`) stops its
//! retransmission timer whenever a handshake record arrives, then parses what it has; when
//! that is not the peer's next flight — a repetition of the previous one — it goes on
//! waiting with no timer armed. RFC 6347 §4.2.4 has an endpoint that receives a repeated
//! flight send its own again; `rtc` does neither, so one lost flight stalls the handshake:
//!
//! - the server's flight 4 (ServerHello … ServerHelloDone) lost: the client repeats its
//!   flight 3 (the ClientHello with the cookie) every second, and each repetition stops the
//!   server's timer, which would have sent flight 4 again;
//! - the client's flight 5 lost: the server repeats flight 4, and each repetition stops the
//!   client's timer, which would have sent flight 5 again.
//!
//! The connection then waits for the session's connect timeout and a new offer: measured in
//! memory (`bench_connect_rtt`, 50 ms round trip, 5 % loss) a pair took 234 round trips
//! (11.7 s) in 2 of 9 seeds. Holding a repetition back lets the receiver's own timer fire
//! and resend its flight, which is what the RFC asks for, one timer period later.
//!
//! A datagram is a repetition when its first handshake message (type, message sequence,
//! fragment offset) is one this connection already handed to the engine, for the messages
//! whose repetition stalls it: the ClientHello with a cookie at a server, and the messages
//! of flight 4 at a client. Everything else passes: the first ClientHello (a server answers
//! each with a HelloVerifyRequest, without a timer), and the client's flight 5 at a server
//! (a finished server answers it with its flight 6 again, which `rtc` does).

use std::collections::HashSet;

/// DTLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Content type, version (2), epoch (2), sequence number (6), length (2).
const RECORD_HEADER: usize = 13;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const SERVER_KEY_EXCHANGE: u8 = 12;
const CERTIFICATE_REQUEST: u8 = 13;
const SERVER_HELLO_DONE: u8 = 14;

/// The first handshake message of a datagram: type, message sequence, fragment offset.
type Key = (u8, u16, u32);

/// One connection's record of the handshake messages handed to the engine.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    delivered: HashSet<Key>,
    /// A ClientHello came: we are the DTLS server.
    server: bool,
    /// A ServerHello came: we are the DTLS client.
    client: bool,
}

impl Repeats {
    /// Whether the engine should get `data`: `false` for a repetition that would stall it.
    pub(crate) fn pass(&mut self, data: &[u8]) -> bool {
        let Some(key @ (kind, sequence, _)) = first_handshake_message(data) else {
            return true;
        };
        let watched = match kind {
            // Sequence 0 is the first ClientHello (no cookie yet).
            CLIENT_HELLO => {
                self.server = true;
                sequence > 0
            }
            SERVER_HELLO => {
                self.client = true;
                true
            }
            CERTIFICATE | SERVER_KEY_EXCHANGE | CERTIFICATE_REQUEST | SERVER_HELLO_DONE => {
                self.client && !self.server
            }
            _ => false,
        };
        !watched || self.delivered.insert(key)
    }
}

/// The first handshake message's key, for a datagram that starts with a handshake record
/// of epoch 0 (later epochs are encrypted, and none of the watched messages is in one).
fn first_handshake_message(data: &[u8]) -> Option<Key> {
    if *data.first()? != HANDSHAKE || data.get(3..5)? != [0, 0] {
        return None;
    }
    // Message type (1), length (3), message sequence (2), fragment offset (3).
    let message = data.get(RECORD_HEADER..RECORD_HEADER + 9)?;
    let kind = *message.first()?;
    let sequence = u16::from_be_bytes([*message.get(4)?, *message.get(5)?]);
    let offset = u32::from_be_bytes([0, *message.get(6)?, *message.get(7)?, *message.get(8)?]);
    Some((kind, sequence, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram with one epoch-0 handshake record whose message is `kind`, `sequence`,
    /// at `offset`; `record_sequence` differs between retransmissions.
    fn record(kind: u8, sequence: u16, offset: u32, record_sequence: u8) -> Vec<u8> {
        let mut d = vec![
            HANDSHAKE,
            0xfe,
            0xfd,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            record_sequence,
            0,
            12,
        ];
        d.push(kind);
        d.extend_from_slice(&[0, 0, 0]);
        d.extend_from_slice(&sequence.to_be_bytes());
        d.extend_from_slice(&offset.to_be_bytes()[1..]);
        d.extend_from_slice(&[0, 0, 0]);
        d
    }

    #[test]
    fn a_server_holds_back_a_repeated_client_hello_with_cookie_only() {
        let mut r = Repeats::default();
        // The first ClientHello, and its repetition (HelloVerifyRequest lost): both pass.
        assert!(r.pass(&record(CLIENT_HELLO, 0, 0, 1)));
        assert!(r.pass(&record(CLIENT_HELLO, 0, 0, 2)));
        // The ClientHello with the cookie passes once.
        assert!(r.pass(&record(CLIENT_HELLO, 1, 0, 3)));
        assert!(!r.pass(&record(CLIENT_HELLO, 1, 0, 4)));
        // The client's flight 5 always passes: a finished server answers it again.
        assert!(r.pass(&record(CERTIFICATE, 2, 0, 5)));
        assert!(r.pass(&record(CERTIFICATE, 2, 0, 6)));
    }

    #[test]
    fn a_client_holds_back_a_repeated_flight_4_but_takes_its_missing_fragments() {
        let mut r = Repeats::default();
        assert!(r.pass(&record(SERVER_HELLO, 1, 0, 1)));
        assert!(r.pass(&record(CERTIFICATE, 2, 0, 2)));
        // The repetition of what came.
        assert!(!r.pass(&record(SERVER_HELLO, 1, 0, 3)));
        assert!(!r.pass(&record(CERTIFICATE, 2, 0, 4)));
        // A fragment that had not come yet, and the message after it.
        assert!(r.pass(&record(CERTIFICATE, 2, 1200, 5)));
        assert!(r.pass(&record(SERVER_HELLO_DONE, 3, 0, 6)));
    }

    #[test]
    fn anything_but_an_epoch_0_handshake_record_passes() {
        let mut r = Repeats::default();
        let mut encrypted = record(SERVER_HELLO, 1, 0, 1);
        encrypted[4] = 1;
        assert!(r.pass(&encrypted));
        assert!(r.pass(&encrypted));
        let application = [23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
        assert!(r.pass(&application));
        assert!(r.pass(&application));
        assert!(r.pass(&[HANDSHAKE]));
        assert!(r.pass(&[]));
    }
}
