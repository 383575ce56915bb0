//! What goes over the two Squadlink channels the replicon backend uses (and opening them,
//! checked to be of the kinds it needs): one tag byte, then the payload. The tag says what
//! the payload is, so one reliable and one unreliable Squadlink channel carry all of
//! replicon's channels in both directions, and the hand-over messages beside them.
//!
//! | tag        | payload                                                           |
//! |------------|-------------------------------------------------------------------|
//! | `0`        | a [`Control`] message (codec-encoded): reliable channel, but for  |
//! |            | `Beacon`, which goes on the unreliable one                        |
//! | `1..=127`  | replicon server channel `tag - 1`: server → client                 |
//! | `128..=255`| replicon client channel `tag - 128`: client → server               |

use bevy_replicon::bytes::Bytes;
use serde::{Deserialize, Serialize};
use squadlink::{Channel, ChannelEndpoint, ChannelKind, PeerId};

/// The most replicon channels of one direction the tag byte can name.
pub(crate) const MAX_CHANNELS: usize = 127;

const CONTROL: u8 = 0;
const TO_CLIENT: u8 = 1;
const TO_SERVER: u8 = 128;

/// The backend's own messages: who serves, and the line of succession.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// "I serve, at this epoch; if I go, the first live member of `line` takes over."
    /// Sent when a member starts serving, to every peer that connects while it serves,
    /// and whenever the line changes.
    Serving {
        /// Bumped at every hand-over; the higher epoch wins.
        epoch: u32,
        /// The members ranked by their measured mesh round trip, best first.
        line: Vec<PeerId>,
    },
    /// Client → server, once a second: the client's mean round trip to the other members,
    /// milliseconds (`u32::MAX`: not measured yet).
    Report {
        /// Mean round trip to the members it is connected to.
        mesh_rtt_ms: u32,
    },
    /// Server → the member it hands over to (a planned hand-over: the best-placed member
    /// serves instead): "serve at `epoch`".
    Yield {
        /// The epoch to serve at (the server's plus one).
        epoch: u32,
    },
    /// To a member that serves (or follows) at an older epoch: "`server` serves at `epoch`".
    /// A client sends it to its previous server when it follows a newer one while it still
    /// reaches the old one, and in answer to a stale `Serving`: so a server cut off from
    /// part of the mesh learns it was replaced (a partial split) instead of serving alone.
    Superseded {
        /// The newer epoch.
        epoch: u32,
        /// Who serves at it.
        server: PeerId,
    },
    /// Server → a member it has made one of its clients (it started serving, or the
    /// member connected or was heard again after silence): a `Serving` claim, and "connect
    /// to me now". Repeated until the member's replicon client has connected. `client`
    /// names that client of the server's (a new number every time it makes one), so a
    /// member connects once per number, and afresh when the number is new: replicon's
    /// server knows only the new client, which must receive the member's protocol hash
    /// and then sends it the whole world.
    Welcome {
        /// As in `Serving`.
        epoch: u32,
        /// As in `Serving`.
        line: Vec<PeerId>,
        /// The server's number for this client.
        client: u64,
    },
    /// Server → a member it has made a client that has not connected yet, once a second
    /// beside the repeated `Welcome` but on the unreliable channel: "I serve at `epoch`".
    /// After an interruption the reliable channel lags the path's return (SCTP's
    /// retransmission timer has backed off: 5 s after a 10 s cut, measured, up to 60 s)
    /// while unreliable messages pass at once; so a member waiting for this server learns
    /// that it does serve, and waits for its claim instead of electing.
    Beacon {
        /// As in `Serving`.
        epoch: u32,
    },
}

/// One received frame, read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A control message.
    Control(Control),
    /// A replicon message on a server channel (from the server).
    ToClient { channel: usize, payload: Bytes },
    /// A replicon message on a client channel (from a client).
    ToServer { channel: usize, payload: Bytes },
}

/// Why a frame was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Nothing at all.
    #[error("an empty frame")]
    Empty,
    /// The tag says control, the rest does not decode.
    #[error("an undecodable control message: {0}")]
    Control(String),
}

/// Reads one frame.
pub(crate) fn read(mut frame: Bytes) -> Result<Frame, FrameError> {
    let Some(&tag) = frame.first() else {
        return Err(FrameError::Empty);
    };
    let payload = frame.split_off(1);
    match tag {
        CONTROL => squadlink::codec::decode::<Control>(&payload)
            .map(Frame::Control)
            .map_err(|e| FrameError::Control(e.to_string())),
        TO_CLIENT..TO_SERVER => Ok(Frame::ToClient {
            channel: usize::from(tag - TO_CLIENT),
            payload,
        }),
        _ => Ok(Frame::ToServer {
            channel: usize::from(tag - TO_SERVER),
            payload,
        }),
    }
}

/// A control message as a frame.
pub(crate) fn control(message: &Control) -> Vec<u8> {
    let mut out = vec![CONTROL];
    // The control messages are plain data: encoding cannot fail, but an error would only
    // leave the frame empty of payload, which the reader rejects.
    if let Ok(bytes) = squadlink::codec::encode(message) {
        out.extend_from_slice(&bytes);
    }
    out
}

/// A replicon message on server channel `channel`, as a frame (`None`: no such tag).
pub(crate) fn to_client(channel: usize, payload: &[u8]) -> Option<Vec<u8>> {
    tagged(TO_CLIENT, channel, payload)
}

/// A replicon message on client channel `channel`, as a frame (`None`: no such tag).
pub(crate) fn to_server(channel: usize, payload: &[u8]) -> Option<Vec<u8>> {
    tagged(TO_SERVER, channel, payload)
}

fn tagged(base: u8, channel: usize, payload: &[u8]) -> Option<Vec<u8>> {
    if channel >= MAX_CHANNELS {
        return None;
    }
    let tag = base.checked_add(u8::try_from(channel).ok()?)?;
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(tag);
    out.extend_from_slice(payload);
    Some(out)
}

/// The two Squadlink channels the backend uses, checked to be of the kinds it needs (an
/// error that says which channel to declare how).
pub(crate) fn endpoints(
    session: &squadlink::Session,
    reliable: Channel,
    unreliable: Channel,
) -> Result<(ChannelEndpoint, ChannelEndpoint), String> {
    let reliable = session.endpoint(reliable).map_err(|e| e.to_string())?;
    let unreliable = session.endpoint(unreliable).map_err(|e| e.to_string())?;
    if reliable.kind() != ChannelKind::ReliableOrdered {
        return Err(format!(
            "channel {:?} is {:?}; replicon's reliable traffic needs ChannelKind::ReliableOrdered \
             (declare it so on every member's SessionBuilder)",
            reliable.channel(),
            reliable.kind()
        ));
    }
    if unreliable.kind() != ChannelKind::Unreliable {
        return Err(format!(
            "channel {:?} is {:?}; replicon's mutations need ChannelKind::Unreliable (a sequenced \
             channel would drop distinct messages that arrive out of order)",
            unreliable.channel(),
            unreliable.kind()
        ));
    }
    Ok((reliable, unreliable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicon_messages_keep_their_channel_and_direction() {
        let frame = to_client(3, b"init").unwrap_or_default();
        assert_eq!(
            read(frame.into()),
            Ok(Frame::ToClient {
                channel: 3,
                payload: Bytes::from_static(b"init")
            })
        );
        let frame = to_server(126, b"ack").unwrap_or_default();
        assert_eq!(
            read(frame.into()),
            Ok(Frame::ToServer {
                channel: 126,
                payload: Bytes::from_static(b"ack")
            })
        );
    }

    #[test]
    fn control_messages_round_trip() {
        let message = Control::Serving {
            epoch: 7,
            line: vec![PeerId(4), PeerId(2)],
        };
        assert_eq!(read(control(&message).into()), Ok(Frame::Control(message)));
    }

    #[test]
    fn a_welcome_round_trips_after_the_older_messages() {
        let message = Control::Welcome {
            epoch: 2,
            line: vec![PeerId(3)],
            client: 9,
        };
        assert_eq!(read(control(&message).into()), Ok(Frame::Control(message)));
    }

    #[test]
    fn a_beacon_round_trips() {
        let message = Control::Beacon { epoch: 3 };
        assert_eq!(read(control(&message).into()), Ok(Frame::Control(message)));
    }

    #[test]
    fn a_channel_past_the_tag_range_is_refused() {
        assert_eq!(to_client(127, b"x"), None);
        assert_eq!(to_server(500, b"x"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(read(Bytes::new()), Err(FrameError::Empty));
        assert!(matches!(
            read(Bytes::from_static(&[0, 0xff, 0xff, 0xff])),
            Err(FrameError::Control(_))
        ));
    }
}
