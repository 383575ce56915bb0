//! Who a `hello` says the client is: the token checked (or, on a dev-mode server, the
//! `player_id` asked for or an anonymous one), and the refusals of the protocol's hello table.
//! Pure apart from the clock and randomness.

use std::time::{SystemTime, UNIX_EPOCH};

use squadlink_protocol::{ErrorCode, PlayerId};

use crate::auth::{TokenError, verify_token_claims};
use crate::close::Close;
use crate::config::Config;
use crate::lobbies::Reply;
use crate::store::{Identity, random_hex};

/// Who the client is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The player.
    pub(crate) player: PlayerId,
    /// How that was proved.
    pub(crate) identity: Identity,
    /// The TURN region its token names, if any.
    pub(crate) region: Option<String>,
}

/// Why a hello is refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The connection closes with this (bad, expired or missing token).
    Close(Close),
    /// An error reply; the client may try again.
    Reply(Reply),
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Identifies a client from its hello's `token` (or the URL's) and `player_id`.
pub(crate) fn identify(
    config: &Config,
    dev_mode: bool,
    token: Option<String>,
    player_id: Option<String>,
) -> Result<Hello, Refused> {
    match (token, &config.auth_secret) {
        (Some(token), Some(secret)) => {
            match verify_token_claims(secret.as_bytes(), &token, unix_now(), config.token_rules()) {
                Ok(verified) => Ok(Hello {
                    player: verified.player,
                    identity: Identity::Token,
                    region: verified.region,
                }),
                Err(err @ TokenError::Expired(_)) => Err(Refused::Close(Close::new(
                    ErrorCode::TokenExpired,
                    err.to_string(),
                ))),
                Err(err) => Err(Refused::Close(Close::new(
                    ErrorCode::TokenInvalid,
                    err.to_string(),
                ))),
            }
        }
        (Some(_), None) => Err(Refused::Close(Close::new(
            ErrorCode::TokenInvalid,
            "this server has no --auth-secret, so it cannot check tokens: connect without one (dev mode) or configure the secret",
        ))),
        (None, _) if !dev_mode => Err(Refused::Close(Close::new(
            ErrorCode::AuthRequired,
            "this server requires a token: pass ?token=... in the URL or \"token\" in hello",
        ))),
        (None, _) => {
            let player = match player_id {
                Some(wanted) => PlayerId::parse(&wanted).ok_or_else(|| {
                    Refused::Reply((
                        ErrorCode::InvalidField,
                        "player_id must be 1-64 of A-Z a-z 0-9 _ - . @".into(),
                    ))
                })?,
                None => anonymous_player().ok_or_else(|| {
                    Refused::Close(Close::new(ErrorCode::Internal, "no randomness for an id"))
                })?,
            };
            Ok(Hello {
                player,
                identity: Identity::Anonymous,
                region: None,
            })
        }
    }
}

fn anonymous_player() -> Option<PlayerId> {
    let hex = random_hex(6).ok()?;
    PlayerId::parse(&format!("anon-{hex}"))
}

/// A `hello` whose `token` is there but not a string: the hello table's "malformed token",
/// which closes, rather than a field error the client could retry.
pub(crate) fn hello_with_malformed_token(text: &str) -> bool {
    let Ok(envelope) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    else {
        return false;
    };
    envelope.get("type").and_then(serde_json::Value::as_str) == Some("hello")
        && envelope
            .get("token")
            .is_some_and(|t| !t.is_string() && !t.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{mint_token, mint_token_in_region};

    fn code(refused: Result<Hello, Refused>) -> Option<ErrorCode> {
        match refused {
            Err(Refused::Close(close)) => close.code,
            Err(Refused::Reply((code, _))) => Some(code),
            Ok(_) => None,
        }
    }

    fn secured() -> Config {
        Config {
            auth_secret: Some("a secret of enough length for tests".into()),
            ..Config::default()
        }
    }

    #[test]
    fn a_dev_server_takes_the_asked_player_id_or_makes_an_anonymous_one() {
        let config = Config::default();
        let asked = identify(&config, true, None, Some("ana".into()));
        assert!(
            matches!(&asked, Ok(h) if h.player.as_str() == "ana" && h.identity == Identity::Anonymous),
            "{asked:?}"
        );
        let anonymous = identify(&config, true, None, None);
        assert!(
            matches!(&anonymous, Ok(h) if h.player.as_str().starts_with("anon-")),
            "{anonymous:?}"
        );
        let bad = identify(&config, true, None, Some("no spaces".into()));
        assert!(matches!(
            bad,
            Err(Refused::Reply((ErrorCode::InvalidField, _)))
        ));
    }

    #[test]
    fn tokens_are_checked_and_their_region_kept() {
        let config = secured();
        let secret = config.auth_secret.clone().unwrap();
        let player = PlayerId::parse("bo").unwrap();
        let later = unix_now() + 600;
        let token = mint_token_in_region(
            secret.as_bytes(),
            &player,
            later,
            crate::auth::TokenRules::default(),
            "eu",
        );
        let hello = identify(&config, false, Some(token), None);
        assert!(
            matches!(&hello, Ok(h) if h.player == player && h.identity == Identity::Token && h.region.as_deref() == Some("eu")),
            "{hello:?}"
        );
        let expired = mint_token(secret.as_bytes(), &player, 1);
        assert_eq!(
            code(identify(&config, false, Some(expired), None)),
            Some(ErrorCode::TokenExpired)
        );
        assert_eq!(
            code(identify(&config, false, Some("x.y.z".into()), None)),
            Some(ErrorCode::TokenInvalid)
        );
        assert_eq!(
            code(identify(&config, false, None, Some("bo".into()))),
            Some(ErrorCode::AuthRequired)
        );
    }

    #[test]
    fn a_token_on_a_server_without_a_secret_is_refused() {
        assert_eq!(
            code(identify(&Config::default(), true, Some("t".into()), None)),
            Some(ErrorCode::TokenInvalid)
        );
    }

    #[test]
    fn only_a_hello_with_a_non_string_token_is_malformed() {
        assert!(hello_with_malformed_token(r#"{"type":"hello","token":5}"#));
        assert!(!hello_with_malformed_token(
            r#"{"type":"hello","token":"t"}"#
        ));
        assert!(!hello_with_malformed_token(
            r#"{"type":"hello","token":null}"#
        ));
        assert!(!hello_with_malformed_token(
            r#"{"type":"join_lobby","token":5}"#
        ));
        assert!(!hello_with_malformed_token("not json"));
    }
}
