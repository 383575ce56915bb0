//! Admission of TCP connections before their WebSocket upgrade.
//!
//! Between `accept` and the upgrade a socket is only an HTTP request in progress, and the
//! WebSocket limits (hello timeout, idle timeout, `--max-connections`) do not see it yet.
//! [`GuardedListener`] bounds that stretch: at most `--max-pending-upgrades` such sockets at
//! once, at most `--max-pending-per-address` from one IP, and each must finish its upgrade
//! within `--upgrade-timeout-secs` of being accepted, or its reads fail and the HTTP server
//! closes it. A socket over a cap is closed at once, before anything is read.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The caps, shared by the listener and every ticket it hands out.
#[derive(Debug)]
pub(crate) struct Admission {
    max_pending: usize,
    max_per_address: u32,
    deadline: Duration,
    pending: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, u32>>,
    /// Sockets closed at accept because a cap was reached (for logs and tests).
    refused: AtomicUsize,
}

impl Admission {
    pub(crate) fn new(max_pending: u32, max_per_address: u32, deadline: Duration) -> Arc<Self> {
        Arc::new(Self {
            max_pending: max_pending as usize,
            max_per_address,
            deadline,
            pending: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            refused: AtomicUsize::new(0),
        })
    }

    /// Sockets accepted and not yet upgraded (or closed).
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Sockets closed at accept because a cap was reached.
    pub(crate) fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// A ticket for a socket from `ip`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Arc<Ticket>> {
        let Ok(mut per_address) = self.per_address.lock() else {
            return None;
        };
        let from_ip = per_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_address || self.pending() >= self.max_pending {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        per_address.insert(ip, from_ip + 1);
        self.pending.fetch_add(1, Ordering::SeqCst);
        Some(Arc::new(Ticket {
            admission: Arc::clone(self),
            ip,
            released: AtomicBool::new(false),
        }))
    }

    fn release(&self, ip: IpAddr) {
        if let Ok(mut per_address) = self.per_address.lock() {
            match per_address.get_mut(&ip) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    per_address.remove(&ip);
                }
            }
        }
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One pending socket's place under the caps. Released once: when the socket is upgraded
/// (it then counts as a WebSocket connection) or when it closes before that.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    released: AtomicBool,
}

impl Ticket {
    /// The socket became a WebSocket: its upgrade deadline no longer applies and its
    /// place under the pending caps is given back.
    pub(crate) fn upgraded(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.admission.release(self.ip);
        }
    }

    fn is_upgraded(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}

/// A TCP socket with an upgrade deadline: until [`Ticket::upgraded`], reads and writes
/// fail with `TimedOut` once the deadline has passed.
pub(crate) struct GuardedStream {
    tcp: TcpStream,
    /// Until the upgrade: the socket's place under the caps and its deadline. Dropped once
    /// the socket is upgraded, so a WebSocket connection keeps no timer or ticket here.
    pending: Option<Pending>,
}

struct Pending {
    ticket: Arc<Ticket>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl GuardedStream {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(());
        };
        if pending.ticket.is_upgraded() {
            self.pending = None;
            return Ok(());
        }
        if pending.deadline.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the WebSocket upgrade did not finish in time",
            ));
        }
        Ok(())
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // Closed before (or without) an upgrade: give the place back.
        if let Some(pending) = &self.pending {
            pending.ticket.upgraded();
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(err) = self.check(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(err) = self.check(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(err) = self.check(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// The TCP listener the HTTP server accepts from: it admits sockets under the caps.
pub(crate) struct GuardedListener {
    tcp: TcpListener,
    admission: Arc<Admission>,
}

impl GuardedListener {
    pub(crate) fn new(tcp: TcpListener, admission: Arc<Admission>) -> Self {
        Self { tcp, admission }
    }
}

impl Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, remote) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        // Most likely out of file descriptors: back off rather than spin.
                        tracing::warn!(%err, "accept failed; pausing for 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
            let Some(ticket) = self.admission.admit(remote.ip()) else {
                tracing::debug!(%remote, pending = self.admission.pending(), "pending-upgrade cap reached; socket closed");
                drop(tcp);
                continue;
            };
            // Signals are small and latency-bound: never wait for Nagle.
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "TCP_NODELAY failed");
            }
            let deadline = Box::pin(tokio::time::sleep(self.admission.deadline));
            return (
                GuardedStream {
                    tcp,
                    pending: Some(Pending { ticket, deadline }),
                },
                remote,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What a request handler learns about its connection: the client's address and the
/// socket's admission ticket.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) remote: SocketAddr,
    /// `None` only if the stream was already upgraded, which a fresh socket never is.
    pub(crate) ticket: Option<Arc<Ticket>>,
}

impl Connected<IncomingStream<'_, GuardedListener>> for ClientInfo {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Self {
            remote: *stream.remote_addr(),
            ticket: stream
                .io()
                .pending
                .as_ref()
                .map(|pending| Arc::clone(&pending.ticket)),
        }
    }
}

/// Compares the descriptors the server may need with the process's limit
/// (`RLIMIT_NOFILE`), raising the soft limit up to the hard one when that is not enough.
/// Returns a warning to log when even the hard limit is too low.
pub(crate) fn fit_file_limit(needed: u64) -> Result<Option<u64>, String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(None);
    }
    let target = needed.min(hard);
    let raised = rustix::process::Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    let now = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => target,
        Err(_) => soft,
    };
    if now >= needed {
        Ok(Some(now))
    } else {
        Err(format!(
            "the file limit (RLIMIT_NOFILE soft {now}, hard {hard}) is below the {needed} descriptors that --max-connections and --max-pending-upgrades may need: raise it (ulimit -n, LimitNOFILE= in systemd) or lower --max-connections or --max-pending-upgrades"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_all_and_release_once() {
        let a = Admission::new(3, 2, Duration::from_secs(5));
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let t1 = a.admit(one);
        let t2 = a.admit(one);
        assert!(t1.is_some() && t2.is_some());
        assert!(a.admit(one).is_none(), "per-address cap");
        let t3 = a.admit(two);
        assert!(t3.is_some());
        assert!(a.admit(two).is_none(), "global cap");
        assert_eq!((a.pending(), a.refused()), (3, 2));
        if let Some(t) = &t1 {
            t.upgraded();
            t.upgraded();
        }
        assert_eq!(a.pending(), 2, "released once");
        assert!(a.admit(one).is_some(), "the released place is free again");
    }
}
