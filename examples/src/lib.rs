//! Shared pieces of the Squadlink examples.
//!
//! The examples themselves live in `src/bin/`; each one's header says what it shows and how
//! to run it. Benchmarks and hardware checks are in the `squadlink-bench` crate (`bench/`).

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: warnings, without the
/// WebRTC engine's own, see [`squadlink::LOG_FILTER`]; `RUST_LOG=squadlink=debug` shows the
/// transport at work).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("warn,{}", squadlink::LOG_FILTER))
            }),
        )
        .init();
}
