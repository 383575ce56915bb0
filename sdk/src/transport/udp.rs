//! The session's UDP socket, shared by the native network thread (which reads and sends)
//! and the game's threads (which send their data directly, `direct.rs`).
//!
//! Sends are plain non-blocking calls; a full send buffer drops the datagram, as a lossy
//! path would. On Unix the socket is watched for reads only: a socket the runtime watches
//! for write readiness as well wakes the network thread every time the kernel frees a sent
//! datagram (on loopback, the moment it is delivered), so every direct send would cost the
//! wake-up it saves. Measured with `perf` on the ping benchmark: that write-space wake-up
//! was 4 % of all CPU samples.

use std::io;
use std::net::SocketAddr;

#[cfg(unix)]
use tokio::io::Interest;
#[cfg(unix)]
use tokio::io::unix::AsyncFd;

/// The session's socket (see the module docs).
pub(crate) struct UdpSocket {
    #[cfg(unix)]
    fd: AsyncFd<std::net::UdpSocket>,
    #[cfg(not(unix))]
    socket: tokio::net::UdpSocket,
}

impl UdpSocket {
    /// Watches `socket` (non-blocking, bound) for reads; must run inside the runtime.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        #[cfg(unix)]
        {
            // SAFETY: `register_with_interest` asks that the descriptor `socket.as_raw_fd()`
            // returns stays open, refers to the same socket and is returned by every call
            // for as long as the `AsyncFd` owns it. A `std::net::UdpSocket` owns its one
            // descriptor and closes it only when dropped, which the `AsyncFd` that owns it
            // does last.
            #[allow(unsafe_code)]
            let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
            Ok(Self { fd })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                socket: tokio::net::UdpSocket::from_std(socket)?,
            })
        }
    }

    /// The address it is bound to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        #[cfg(unix)]
        {
            self.fd.get_ref().local_addr()
        }
        #[cfg(not(unix))]
        self.socket.local_addr()
    }

    /// Waits for the next datagram.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        #[cfg(unix)]
        loop {
            let mut ready = self.fd.readable().await?;
            if let Ok(result) = ready.try_io(|fd| fd.get_ref().recv_from(buf)) {
                return result;
            }
        }
        #[cfg(not(unix))]
        self.socket.recv_from(buf).await
    }

    /// The next datagram if one is waiting (`WouldBlock` otherwise).
    pub(crate) fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        #[cfg(unix)]
        {
            self.fd.try_io(Interest::READABLE, |fd| fd.recv_from(buf))
        }
        #[cfg(not(unix))]
        self.socket.try_recv_from(buf)
    }

    /// Sends one datagram without waiting, from any thread; one the kernel will not take
    /// now (a full send buffer) is dropped, as a lossy path would.
    pub(crate) fn send_or_drop(&self, data: &[u8], to: SocketAddr) {
        #[cfg(unix)]
        let sent = self.fd.get_ref().send_to(data, to);
        #[cfg(not(unix))]
        let sent = self.socket.try_send_to(data, to);
        if let Err(err) = sent {
            tracing::trace!(%err, %to, "datagram dropped on send");
        }
    }
}
