//! Time-limited TURN credentials in coturn's REST-API format.
//!
//! coturn started with `use-auth-secret` and `static-auth-secret=<secret>` accepts a
//! username `<unix expiry>:<anything>` with password `base64(HMAC-SHA1(secret, username))`
//! until the expiry passes. No call to coturn is needed to issue one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use squadlink_protocol::{IceServer, PlayerId};

use crate::config::{Config, MAX_TURN_TTL_SECS};

/// A TURN username and password pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// `<unix expiry>:<player id>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
    /// Unix time after which coturn refuses it.
    pub expires_at: u64,
}

/// Issues a credential for `player`, valid until `expires_at` (unix seconds).
pub fn issue_credential(secret: &[u8], player: &PlayerId, expires_at: u64) -> TurnCredential {
    let username = format!("{expires_at}:{player}");
    let password = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; an empty password would simply be refused.
        Err(_) => String::new(),
    };
    TurnCredential {
        username,
        password,
        expires_at,
    }
}

/// The TURN URLs for a player of `region`: that region's servers if the fleet has any,
/// else the region-less `--turn-url` ones, else every region's.
pub fn turn_urls_for(config: &Config, region: Option<&str>) -> Vec<String> {
    let of_region: Vec<String> = config
        .turn_servers
        .iter()
        .filter(|s| Some(s.region.as_str()) == region)
        .map(|s| s.url.clone())
        .collect();
    if !of_region.is_empty() {
        return of_region;
    }
    if !config.turn_urls.is_empty() {
        return config.turn_urls.clone();
    }
    config.turn_servers.iter().map(|s| s.url.clone()).collect()
}

/// The ICE servers for one player: the STUN URLs, then the TURN URLs with a fresh
/// credential signed by the first secret. The lifetime is capped at 24 hours.
pub fn ice_servers_for(config: &Config, player: &PlayerId, now_unix: u64) -> Vec<IceServer> {
    ice_servers_in(config, player, now_unix, None)
}

/// Like [`ice_servers_for`], with the TURN servers of the player's `region`
/// ([`turn_urls_for`]).
pub fn ice_servers_in(
    config: &Config,
    player: &PlayerId,
    now_unix: u64,
    region: Option<&str>,
) -> Vec<IceServer> {
    let mut servers = Vec::with_capacity(2);
    if !config.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
            expires_at: None,
        });
    }
    let turn_urls = turn_urls_for(config, region);
    if let (false, Some(secret)) = (turn_urls.is_empty(), config.turn_secrets.first()) {
        let ttl = config.turn_ttl_secs.min(MAX_TURN_TTL_SECS);
        let cred = issue_credential(secret.as_bytes(), player, now_unix.saturating_add(ttl));
        servers.push(IceServer {
            urls: turn_urls,
            username: Some(cred.username),
            credential: Some(cred.password),
            expires_at: Some(cred.expires_at),
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_gets_its_own_servers_else_the_default_set_else_the_whole_fleet() {
        let server = |region: &str, url: &str| crate::config::RegionalTurn {
            region: region.into(),
            url: url.into(),
        };
        let mut config = Config {
            turn_servers: vec![
                server("eu", "turn:eu1"),
                server("eu", "turn:eu2"),
                server("us", "turn:us1"),
            ],
            ..Config::default()
        };
        assert_eq!(turn_urls_for(&config, Some("eu")), ["turn:eu1", "turn:eu2"]);
        assert_eq!(turn_urls_for(&config, Some("us")), ["turn:us1"]);
        assert_eq!(
            turn_urls_for(&config, None),
            ["turn:eu1", "turn:eu2", "turn:us1"]
        );
        config.turn_urls = vec!["turn:any".into()];
        assert_eq!(turn_urls_for(&config, Some("asia")), ["turn:any"]);
        assert_eq!(turn_urls_for(&config, Some("us")), ["turn:us1"]);
    }

    #[test]
    fn matches_the_coturn_rest_formula() {
        // Known answer computed independently:
        // printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac 'north' -binary | base64
        let p = PlayerId::parse("alice").unwrap();
        let c = issue_credential(b"north", &p, 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn ttl_is_capped_and_first_secret_signs() {
        let p = PlayerId::parse("bob").unwrap();
        let config = Config {
            turn_urls: vec!["turn:127.0.0.1:3478".into()],
            turn_secrets: vec!["new".into(), "old".into()],
            turn_ttl_secs: 10 * MAX_TURN_TTL_SECS,
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            ..Config::default()
        };
        let servers = ice_servers_for(&config, &p, 100);
        assert_eq!(servers.len(), 2);
        let turn = servers.get(1);
        assert_eq!(
            turn.and_then(|s| s.expires_at),
            Some(100 + MAX_TURN_TTL_SECS)
        );
        let expected = issue_credential(b"new", &p, 100 + MAX_TURN_TTL_SECS);
        assert_eq!(
            turn.and_then(|s| s.credential.clone()),
            Some(expected.password)
        );
    }
}
