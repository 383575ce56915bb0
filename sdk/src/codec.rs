//! Typed messages: serde + bincode 2, with a decode size limit so a hostile peer cannot make
//! us allocate more than a message could hold.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The most a typed message may cost to decode, in bytes read and allocated (1 MiB). It is
/// fixed (bincode takes it at compile time) and independent of
/// [`crate::SessionBuilder::max_message_size`]: a typed value whose encoding is larger is
/// refused by [`encode`] (no receiver could decode it); send it as raw bytes with a codec of
/// your own instead.
pub const DECODE_LIMIT: usize = 1 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes `value` for sending. An encoding over [`DECODE_LIMIT`] is an error.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| Error::Codec(format!("cannot encode: {e}")))?;
    if bytes.len() > DECODE_LIMIT {
        return Err(Error::Codec(format!(
            "the value encodes to {} bytes, over codec::DECODE_LIMIT ({DECODE_LIMIT}): no receiver could decode it; send it with Session::send and a codec of your own",
            bytes.len()
        )));
    }
    Ok(Bytes::from(bytes))
}

/// Decodes a received message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::Codec(format!("cannot decode: {e}")))?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after the message (sender and receiver types differ?)",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct State {
        x: f32,
        name: String,
        inputs: Vec<u8>,
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let s = State {
            x: 1.5,
            name: "p1".into(),
            inputs: vec![1, 2, 3],
        };
        let bytes = encode(&s).unwrap();
        assert_eq!(decode::<State>(&bytes).unwrap(), s);
        assert!(decode::<State>(&bytes[..bytes.len() - 1]).is_err());
        // A length prefix claiming 4 GiB must not allocate it.
        let hostile = [0u8, 0, 0, 0xC0, 0xFB, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode::<State>(&hostile).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(decode::<State>(&long).is_err());
    }

    #[test]
    fn a_value_over_the_decode_limit_is_refused_when_sent() {
        let fits = vec![7u8; DECODE_LIMIT - 16];
        let bytes = encode(&fits).unwrap();
        assert_eq!(decode::<Vec<u8>>(&bytes).unwrap(), fits);
        let too_big = vec![7u8; DECODE_LIMIT + 1];
        let err = encode(&too_big).unwrap_err();
        assert!(err.to_string().contains("DECODE_LIMIT"), "{err}");
    }
}
