//! `squadlink-matchmaker`: run the matchmaker, or mint a player token.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use squadlink_matchmaker::{Config, Server, StopSignals, auth};
use squadlink_protocol::PlayerId;

/// Squadlink matchmaker: lobbies, WebRTC signaling relay and TURN credentials over one
/// WebSocket endpoint (protocol v1, see docs/protocol.md). Every option can also be set
/// through the environment variable shown with it.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Print a player token signed with the auth secret (what a game backend would mint).
    MintToken {
        /// The player id to put in the token.
        #[arg(long)]
        player: String,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The matchmaker's --auth-secret.
        #[arg(long, env = "SQUADLINK_AUTH_SECRET", hide_env_values = true)]
        secret: String,
        /// An `aud` claim, for a matchmaker started with --token-audience.
        #[arg(long, env = "SQUADLINK_TOKEN_AUDIENCE")]
        audience: Option<String>,
        /// An `iss` claim, for a matchmaker started with --token-issuer.
        #[arg(long, env = "SQUADLINK_TOKEN_ISSUER")]
        issuer: Option<String>,
        /// A `region` claim: the player gets that region's TURN servers (--turn-server).
        #[arg(long)]
        region: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::MintToken {
            player,
            ttl,
            secret,
            audience,
            issuer,
            region,
        }) => mint(
            &player,
            ttl,
            &secret,
            auth::TokenRules {
                audience: audience.as_deref(),
                issuer: issuer.as_deref(),
            },
            region.as_deref(),
        ),
        None => serve(cli.config),
    }
}

fn mint(
    player: &str,
    ttl: u64,
    secret: &str,
    claims: auth::TokenRules<'_>,
    region: Option<&str>,
) -> ExitCode {
    let Some(player) = PlayerId::parse(player) else {
        eprintln!("error: --player must be 1-64 of A-Z a-z 0-9 _ - . @");
        return ExitCode::FAILURE;
    };
    if region.is_some_and(|r| !auth::valid_region(r)) {
        eprintln!("error: --region must be 1-32 of a-z 0-9 - _ (e.g. eu, us-east)");
        return ExitCode::FAILURE;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires = now.saturating_add(ttl);
    let token = match region {
        Some(region) => {
            auth::mint_token_in_region(secret.as_bytes(), &player, expires, claims, region)
        }
        None => auth::mint_token_with(secret.as_bytes(), &player, expires, claims),
    };
    println!("{token}");
    ExitCode::SUCCESS
}

fn serve(config: Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Signals first: one that comes while the server starts is then a graceful stop.
        let signals = StopSignals::install()?;
        let server = Server::bind(config).await?;
        server.run_until(signals).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
