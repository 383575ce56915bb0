//! A matchmaker on a runtime of its own, for code with no async runtime to host one: a
//! game's tests (Bevy Apps and blocking `Session`s run on the test's thread) and tools.

use std::ops::Deref;

use crate::config::Config;
use crate::server::{Error, Server};

/// A matchmaker serving from a tokio runtime it owns (two worker threads). Start one per
/// test: it listens on a free loopback port unless the config names another address.
/// Dropping it stops the matchmaker, then its runtime. It derefs to its [`Server`] for
/// the address, URL, connection count and the rest.
///
/// ```no_run
/// # fn demo() -> Result<(), squadlink_matchmaker::Error> {
/// let matchmaker = squadlink_matchmaker::Embedded::start()?;
/// println!("sessions join through {}", matchmaker.url());
/// # Ok(()) }
/// ```
pub struct Embedded {
    // Declared first so that it is dropped first: the server stops on the runtime that
    // serves it.
    server: Server,
    _runtime: tokio::runtime::Runtime,
}

impl Embedded {
    /// A matchmaker with the default settings on a free port of 127.0.0.1.
    pub fn start() -> Result<Self, Error> {
        Self::with_config(Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        })
    }

    /// A matchmaker with `config` (its `listen` address included).
    pub fn with_config(config: Config) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("squadlink-matchmaker")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let server = runtime.block_on(Server::bind(config))?;
        Ok(Self {
            server,
            _runtime: runtime,
        })
    }
}

impl Deref for Embedded {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn an_embedded_matchmaker_serves_on_a_free_loopback_port_until_dropped() {
        let mm = Embedded::start().unwrap();
        let addr = mm.local_addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        assert_eq!(mm.url(), format!("ws://{addr}/v1"));
        let mut http = TcpStream::connect(addr).unwrap();
        http.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        http.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
            "{answer}"
        );
        assert!(answer.ends_with("ok\n"), "{answer}");
        drop(mm);
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after the drop"
        );
    }
}
