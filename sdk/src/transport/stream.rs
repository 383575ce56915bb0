//! TURN over TCP and over TLS (RFC 8656 §3.1, RFC 6062 is not needed: the relay itself stays
//! UDP). For networks that block outbound UDP: the TURN client (`rtc`'s, as for UDP) talks
//! to its server over one stream, and the server relays our peers' UDP.
//!
//! A stream carries back-to-back STUN messages and ChannelData messages; neither has a
//! frame marker, so [`Framer`] cuts the byte stream by their length fields. Each stream is
//! one tokio task that connects (with a timeout), then moves frames between the socket and
//! the session's network loop through channels; the loop never waits on a stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::relay::StreamEvent;

/// TCP connect and TLS handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames waiting for the socket; past this they are dropped (as UDP would).
const WRITE_QUEUE: usize = 1024;
/// A write that makes no progress this long means a dead connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The network loop's end of one stream. Dropping it stops the stream's task.
pub(crate) struct StreamLink {
    tx: mpsc::Sender<BytesMut>,
    task: tokio::task::JoinHandle<()>,
}

impl StreamLink {
    /// Starts connecting to `server` (over TLS when `tls` is given); events come tagged with
    /// `id` on `events`.
    pub(crate) fn spawn(
        id: u64,
        server: SocketAddr,
        tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
        events: mpsc::UnboundedSender<(u64, StreamEvent)>,
    ) -> StreamLink {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(async move {
            let reason = run(server, tls, rx, &events, id).await;
            let _ = events.send((id, StreamEvent::Closed(reason)));
        });
        StreamLink { tx, task }
    }

    /// Queues one message for the server; dropped if the queue is full.
    pub(crate) fn send(&self, frame: BytesMut) {
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::trace!("TURN stream write queue full: message dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::trace!("TURN stream closed: message dropped");
            }
        }
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream's life; returns why it ended.
async fn run(
    server: SocketAddr,
    tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
    rx: mpsc::Receiver<BytesMut>,
    events: &mpsc::UnboundedSender<(u64, StreamEvent)>,
    id: u64,
) -> String {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(server))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("TCP connect to {server} failed: {e}"),
        Err(_) => {
            return format!(
                "TCP connect to {server} timed out after {} s (is the port open on this network?)",
                CONNECT_TIMEOUT.as_secs()
            );
        }
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%e, "TCP_NODELAY not set");
    }
    match tls {
        None => pump(tcp, rx, events, id).await,
        Some((name, config)) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp)).await
            {
                Ok(Ok(stream)) => pump(stream, rx, events, id).await,
                Ok(Err(e)) => format!(
                    "TLS handshake with {server} ({name:?}) failed: {e} (a self-signed TURN certificate needs SessionBuilder::tls_root_certificates)"
                ),
                Err(_) => format!(
                    "TLS handshake with {server} timed out after {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            }
        }
    }
}

/// Moves frames both ways until either side ends.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mut rx: mpsc::Receiver<BytesMut>,
    events: &mpsc::UnboundedSender<(u64, StreamEvent)>,
    id: u64,
) -> String {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = Framer::default();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(frame) = out else { return "closed by the session".into() };
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write failed: {e}"),
                    Err(_) => return "write stalled: the server stopped reading".into(),
                }
            }
            read = reader.read_buf(&mut framer.buf) => {
                match read {
                    Ok(0) => return "the server closed the connection".into(),
                    Ok(_) => {}
                    Err(e) => return format!("read failed: {e}"),
                }
                loop {
                    match framer.next() {
                        Ok(Some(frame)) => {
                            if events.send((id, StreamEvent::Frame(frame))).is_err() {
                                return "the session ended".into();
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return e,
                    }
                }
            }
        }
    }
}

/// Cuts a TURN byte stream into messages.
#[derive(Default)]
pub(crate) struct Framer {
    pub(crate) buf: BytesMut,
}

impl Framer {
    /// The next whole message, `None` if more bytes are needed, or an error for bytes that
    /// are neither STUN nor ChannelData (the stream cannot be resynchronised: close it).
    pub(crate) fn next(&mut self) -> Result<Option<BytesMut>, String> {
        let (Some(&b0), Some(&b2), Some(&b3)) =
            (self.buf.first(), self.buf.get(2), self.buf.get(3))
        else {
            return Ok(None);
        };
        let length = usize::from(u16::from_be_bytes([b2, b3]));
        let (frame, skip) = match b0 >> 6 {
            // STUN: 20-byte header, attributes are 4-byte aligned.
            0b00 => (20 + length, 0),
            // ChannelData: 4-byte header; padded to 4 bytes on streams (RFC 8656 §12.5).
            0b01 => (4 + length, length.next_multiple_of(4) - length),
            _ => {
                return Err(format!(
                    "not a STUN or ChannelData message (first byte {b0:#04x})"
                ));
            }
        };
        if self.buf.len() < frame + skip {
            return Ok(None);
        }
        let out = self.buf.split_to(frame);
        self.buf.advance(skip);
        Ok(Some(out))
    }
}

/// The TLS settings for TURN over TLS: Mozilla's roots plus `extra` certificates (PEM).
pub(crate) fn tls_config(extra_pem: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_pem {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable root certificate: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err("no certificate found in the PEM given as a TLS root".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn stun(len: u16) -> Vec<u8> {
        let mut m = vec![0x01, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[9; 12]);
        m.extend(std::iter::repeat_n(0xAB, usize::from(len)));
        m
    }

    fn channel_data(len: u16) -> Vec<u8> {
        let mut m = vec![0x40, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(0xCD, usize::from(len)));
        m
    }

    #[test]
    fn cuts_messages_fed_byte_by_byte() {
        let mut stream = stun(8);
        stream.extend(channel_data(5));
        stream.extend([0, 0, 0]); // padding to 8
        stream.extend(channel_data(4));
        stream.extend(stun(0));
        let mut f = Framer::default();
        let mut out = Vec::new();
        for b in &stream {
            f.buf.extend_from_slice(&[*b]);
            while let Some(m) = f.next().unwrap() {
                out.push(m.to_vec());
            }
        }
        assert_eq!(
            out,
            vec![stun(8), channel_data(5), channel_data(4), stun(0)]
        );
        assert!(f.buf.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let mut f = Framer::default();
        f.buf.extend_from_slice(&[0xFF, 0, 0, 4, 1, 2, 3, 4]);
        assert!(f.next().is_err());
    }

    #[test]
    fn tls_roots_reject_junk() {
        assert!(tls_config(&[]).is_ok());
        assert!(tls_config(&[b"not a certificate".to_vec()]).is_err());
    }
}
