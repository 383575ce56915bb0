//! Player tokens: compact JWTs signed with HMAC-SHA256 (`alg: HS256`).
//!
//! A game's backend mints a token after it has logged the player in, and hands it to the
//! game client, which passes it to the matchmaker (`?token=` or in `hello`). Any JWT library
//! can mint one: header `{"alg":"HS256","typ":"JWT"}`, claims `{"sub": player id, "exp":
//! unix seconds}`, signed with the matchmaker's `--auth-secret`. This module mints and checks
//! them without extra dependencies.
//!
//! Optional claims: `iss` (who minted it) and `aud` (a string, or an array of strings: which
//! services it is for). The matchmaker checks them only when it is configured with
//! `--token-issuer` / `--token-audience`; then a token without them is refused. A `region`
//! claim (e.g. `"eu"`) picks the player's TURN servers (`--turn-server REGION=URL`); it
//! wins over a `?region=` query parameter.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use squadlink_protocol::PlayerId;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or the parts are not the expected JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than HS256.
    #[error("unsupported token algorithm {0:?}: only HS256 is accepted")]
    UnsupportedAlgorithm(String),
    /// The signature does not match the server's secret.
    #[error("token signature does not verify: was it minted with this server's --auth-secret?")]
    BadSignature,
    /// The token's `exp` is in the past.
    #[error("token expired at unix time {0}: mint a new one")]
    Expired(u64),
    /// `sub` is not a valid player id.
    #[error("token subject is not a valid player id (1-64 of A-Z a-z 0-9 _ - . @, no ':')")]
    BadPlayerId,
    /// `aud` does not name this server's audience.
    #[error(
        "token audience {found:?} does not include {expected:?}: mint the token for this matchmaker (--token-audience)"
    )]
    WrongAudience {
        /// What the server requires.
        expected: String,
        /// What the token says (empty when it has no `aud`).
        found: Vec<String>,
    },
    /// `iss` is not this server's issuer.
    #[error(
        "token issuer {found:?} is not {expected:?}: mint the token with the issuer the matchmaker expects (--token-issuer)"
    )]
    WrongIssuer {
        /// What the server requires.
        expected: String,
        /// What the token says (`None` when it has no `iss`).
        found: Option<String>,
    },
}

/// What a token must say besides a valid signature, expiry and subject. `None` fields are
/// not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenRules<'a> {
    /// The `aud` claim must be this string, or an array containing it.
    pub audience: Option<&'a str>,
    /// The `iss` claim must be this string.
    pub issuer: Option<&'a str>,
}

/// A JWT `aud` claim: one string or several.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a],
            Self::Many(v) => v,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The player (`sub`).
    pub player: PlayerId,
    /// The `region` claim, if any (see [`valid_region`]; an invalid one is ignored).
    pub region: Option<String>,
}

/// Whether `region` is a region name: 1-32 of a-z 0-9 `-` `_`.
pub fn valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn sign(secret: &[u8], signing_input: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail; an empty result would simply
    // not verify.
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Mints a token for `player` that expires at `expires_at` (unix seconds).
pub fn mint_token(secret: &[u8], player: &PlayerId, expires_at: u64) -> String {
    mint_token_with(secret, player, expires_at, TokenRules::default())
}

/// Mints a token that also carries `iss` and `aud` claims, for a matchmaker started with
/// `--token-issuer` / `--token-audience`.
pub fn mint_token_with(
    secret: &[u8],
    player: &PlayerId,
    expires_at: u64,
    claims: TokenRules<'_>,
) -> String {
    mint(secret, player, expires_at, claims, None)
}

/// `header.claims.signature` for `player`, with `rules`' claims and `region`.
fn mint(
    secret: &[u8],
    player: &PlayerId,
    expires_at: u64,
    rules: TokenRules<'_>,
    region: Option<&str>,
) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: player.as_str().to_owned(),
        exp: expires_at,
        iss: rules.issuer.map(str::to_owned),
        aud: rules.audience.map(|a| Audience::One(a.to_owned())),
        region: region.map(str::to_owned),
    };
    // A struct of strings and a number always serializes.
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap_or_default());
    let input = format!("{header}.{claims}");
    let sig = URL_SAFE_NO_PAD.encode(sign(secret, &input));
    format!("{input}.{sig}")
}

/// Mints a token like [`mint_token_with`] that also names the player's `region` (which
/// TURN servers it is handed).
pub fn mint_token_in_region(
    secret: &[u8],
    player: &PlayerId,
    expires_at: u64,
    claims: TokenRules<'_>,
    region: &str,
) -> String {
    mint(secret, player, expires_at, claims, Some(region))
}

/// Checks a token's signature and expiry and returns its player id.
pub fn verify_token(secret: &[u8], token: &str, now_unix: u64) -> Result<PlayerId, TokenError> {
    verify_token_with(secret, token, now_unix, TokenRules::default())
}

/// Checks a token's signature, expiry, and the `aud`/`iss` claims `rules` asks for, and
/// returns its player id.
pub fn verify_token_with(
    secret: &[u8],
    token: &str,
    now_unix: u64,
    rules: TokenRules<'_>,
) -> Result<PlayerId, TokenError> {
    verify_token_claims(secret, token, now_unix, rules).map(|v| v.player)
}

/// Like [`verify_token_with`], returning the claims the matchmaker uses beside the player.
pub fn verify_token_claims(
    secret: &[u8],
    token: &str,
    now_unix: u64,
    rules: TokenRules<'_>,
) -> Result<Verified, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with \"alg\""))?;
    if header.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm(header.alg));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signing_input = token
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or(TokenError::Malformed("truncated"))?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| TokenError::BadSignature)?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| TokenError::Malformed("claims are not base64url"))?;
    let claims: Claims = serde_json::from_slice(&claims)
        .map_err(|_| TokenError::Malformed("claims need \"sub\" (string) and \"exp\" (number)"))?;
    if claims.exp <= now_unix {
        return Err(TokenError::Expired(claims.exp));
    }
    if let Some(expected) = rules.issuer
        && claims.iss.as_deref() != Some(expected)
    {
        return Err(TokenError::WrongIssuer {
            expected: expected.to_owned(),
            found: claims.iss,
        });
    }
    if let Some(expected) = rules.audience {
        let found = claims.aud.map(Audience::into_vec).unwrap_or_default();
        if !found.iter().any(|a| a == expected) {
            return Err(TokenError::WrongAudience {
                expected: expected.to_owned(),
                found,
            });
        }
    }
    let player = PlayerId::parse(&claims.sub).ok_or(TokenError::BadPlayerId)?;
    let region = claims.region.filter(|r| valid_region(r));
    Ok(Verified { player, region })
}

/// Fuzzer entry point (feature `fuzzing`; not a stable API): checks arbitrary text as a
/// token, with and without audience/issuer rules. It must never panic, and a token is only
/// ever accepted with the secret's own signature over its first two parts.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn fuzz_token(data: &[u8]) {
    const SECRET: &[u8] = b"fuzz-secret";
    let text = String::from_utf8_lossy(data);
    let strict = TokenRules {
        audience: Some("squadlink"),
        issuer: Some("login"),
    };
    for rules in [TokenRules::default(), strict] {
        if verify_token_with(SECRET, &text, 1, rules).is_ok() {
            let signed = text
                .rsplit_once('.')
                .is_some_and(|(input, sig)| URL_SAFE_NO_PAD.encode(sign(SECRET, input)) == sig);
            assert!(
                signed,
                "accepted a token not signed with the secret: {text}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Option<PlayerId> {
        PlayerId::parse("alice")
    }

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let p = alice().unwrap();
        let t = mint_token(b"s3cret", &p, 1_000);
        assert_eq!(verify_token(b"s3cret", &t, 999), Ok(p));
        assert_eq!(
            verify_token(b"s3cret", &t, 1_000),
            Err(TokenError::Expired(1_000))
        );
        assert_eq!(
            verify_token(b"other", &t, 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_required() {
        let p = alice().unwrap();
        let rules = TokenRules {
            audience: Some("squadlink"),
            issuer: Some("https://login.example"),
        };
        let plain = mint_token(b"k", &p, 100);
        assert_eq!(verify_token(b"k", &plain, 1), Ok(p.clone()));
        assert!(matches!(
            verify_token_with(b"k", &plain, 1, rules),
            Err(TokenError::WrongIssuer { found: None, .. })
        ));
        let both = mint_token_with(b"k", &p, 100, rules);
        assert_eq!(verify_token_with(b"k", &both, 1, rules), Ok(p.clone()));
        let other_aud = mint_token_with(
            b"k",
            &p,
            100,
            TokenRules {
                audience: Some("another-game"),
                ..rules
            },
        );
        assert!(matches!(
            verify_token_with(b"k", &other_aud, 1, rules),
            Err(TokenError::WrongAudience { .. })
        ));
        // `aud` as an array, as JWT allows.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"alice","exp":100,"iss":"https://login.example","aud":["web","squadlink"]}"#,
        );
        let input = format!("{header}.{claims}");
        let array = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sign(b"k", &input)));
        assert_eq!(verify_token_with(b"k", &array, 1, rules), Ok(p));
    }

    #[test]
    fn every_recorded_fuzzer_crash_stays_fixed() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/token");
        let mut ran = 0;
        for input in std::fs::read_dir(&dir).unwrap() {
            fuzz_token(&std::fs::read(input.unwrap().path()).unwrap());
            ran += 1;
        }
        assert!(ran > 0, "no regression inputs under {}", dir.display());
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let p = alice().unwrap();
        let t = mint_token(b"k", &p, 10_000);
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":10000}"#);
        let mut parts: Vec<&str> = t.split('.').collect();
        if let Some(c) = parts.get_mut(1) {
            *c = &forged_claims;
        }
        assert_eq!(
            verify_token(b"k", &parts.join("."), 1),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(verify_token(b"k", junk, 1).is_err(), "{junk}");
        }
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":99}"#)
        );
        assert_eq!(
            verify_token(b"k", &none_alg, 1),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
    }
}
