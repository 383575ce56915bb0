//! Reading a STUN message (RFC 8489): the 20-byte header and the walk over its attributes.
//! The NAT probe reads Binding responses with it, the transport the ufrag of Binding
//! requests; the WebRTC engine parses the rest itself. Bytes come from the network: every
//! length is checked against what arrived, and a message that lies about one is refused.

/// The magic cookie every STUN message carries after its type and length.
pub(crate) const MAGIC: u32 = 0x2112_A442;
/// The message type of a Binding request.
pub(crate) const BINDING_REQUEST: u16 = 0x0001;
/// The message type of a Binding success response.
pub(crate) const BINDING_SUCCESS: u16 = 0x0101;

/// A STUN message whose header and length are consistent with the bytes that arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// The message type (method and class), e.g. [`BINDING_REQUEST`].
    pub(crate) kind: u16,
    /// The 12-byte transaction id.
    pub(crate) transaction: &'a [u8],
    attributes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Reads the header of `buf`; `None` unless it has the magic cookie and holds the whole
    /// length the header claims.
    pub(crate) fn parse(buf: &'a [u8]) -> Option<Self> {
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
        };
        if buf.get(4..8)? != MAGIC.to_be_bytes() {
            return None;
        }
        let len = usize::from(be16(2)?);
        Some(Self {
            kind: be16(0)?,
            transaction: buf.get(8..20)?,
            attributes: buf.get(20..20 + len)?,
        })
    }

    /// Its attributes in order, as `(type, value)`; the walk ends at the first one whose
    /// length runs past the message.
    pub(crate) fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.attributes,
        }
    }
}

/// The attributes of a [`Message`], each `(type, value)` (the value without its padding).
pub(crate) struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let kind = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]));
        let Some(value) = rest.get(4..4 + len) else {
            self.rest = &[];
            return None;
        };
        // Values are padded to a multiple of 4; the last one's padding may be missing.
        self.rest = rest.get(4 + len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some((kind, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC.to_be_bytes());
        m.extend_from_slice(&[9; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn walks_attributes_over_their_padding() {
        let m = message(BINDING_REQUEST, &[(6, b"abcde"), (0x8028, &[1, 2, 3, 4])]);
        let parsed = Message::parse(&m).unwrap();
        assert_eq!(parsed.kind, BINDING_REQUEST);
        assert_eq!(parsed.transaction, &[9; 12]);
        let attrs: Vec<_> = parsed.attributes().collect();
        assert_eq!(
            attrs,
            vec![(6, &b"abcde"[..]), (0x8028, &[1u8, 2, 3, 4][..])]
        );
    }

    #[test]
    fn refuses_a_message_shorter_than_its_length_or_without_the_cookie() {
        let mut m = message(BINDING_SUCCESS, &[(0x20, &[0; 8])]);
        assert!(Message::parse(&m).is_some());
        assert!(Message::parse(&m[..m.len() - 1]).is_none());
        m[4] ^= 1;
        assert!(Message::parse(&m).is_none());
        assert!(Message::parse(&[]).is_none());
    }

    #[test]
    fn stops_at_an_attribute_that_runs_past_the_message() {
        let mut m = message(BINDING_REQUEST, &[(6, b"ab"), (7, &[0; 4])]);
        // The second attribute claims 200 bytes.
        let at = m.len() - 6;
        m[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
        let parsed = Message::parse(&m).unwrap();
        assert_eq!(
            parsed.attributes().collect::<Vec<_>>(),
            vec![(6, &b"ab"[..])]
        );
    }
}
