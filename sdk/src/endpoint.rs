//! One channel of a session as a handle of its own, for a layer that owns its transport (a
//! GGRS socket, a replication backend) while the game keeps the [`crate::Session`].

use std::sync::Arc;

use bytes::Bytes;
use squadlink_protocol::PeerId;

use crate::bridge::{Commands, Shared};
use crate::channel::{Channel, ChannelKind, FRAGMENT_SIZE};
use crate::error::{Error, Result};

/// One channel of a session: send on it and take what arrives on it, from any thread.
/// `Send`, `Sync` and cheap to clone; made by [`crate::Session::endpoint`].
///
/// It shares the channel's inbox with the session: a message taken here is not seen by
/// [`crate::Session::receive`], and the other way round. Once the session has closed,
/// sending fails with [`Error::Closed`] and nothing more arrives.
#[derive(Clone)]
pub struct ChannelEndpoint {
    channel: Channel,
    kind: ChannelKind,
    limit: usize,
    cmd: Commands,
    inbox: crossbeam_channel::Receiver<(PeerId, Bytes)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChannelEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelEndpoint")
            .field("channel", &self.channel)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The largest message a channel of `kind` takes: `max_message_size` on a reliable one,
/// one fragment on the others (they are never split).
pub(crate) fn size_limit(kind: ChannelKind, max_message_size: usize) -> usize {
    if kind.is_reliable() {
        max_message_size
    } else {
        FRAGMENT_SIZE
    }
}

impl ChannelEndpoint {
    pub(crate) fn new(
        (channel, kind, limit): (Channel, ChannelKind, usize),
        cmd: Commands,
        inbox: crossbeam_channel::Receiver<(PeerId, Bytes)>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            channel,
            kind,
            limit,
            cmd,
            inbox,
            shared,
        }
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Its kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The largest message it takes, bytes.
    pub fn max_message_size(&self) -> usize {
        self.limit
    }

    fn queue(&self, to: Option<PeerId>, payload: Bytes) -> Result<()> {
        if self.shared.has_ended() {
            return Err(Error::Closed);
        }
        if payload.len() > self.limit {
            return Err(Error::MessageTooLarge {
                channel: self.channel,
                size: payload.len(),
                limit: self.limit,
            });
        }
        if self.cmd.send_data(to, (self.channel.0, self.kind), payload) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Sends `data` to one peer, as [`crate::Session::send`] does. Never blocks.
    pub fn send(&self, peer: PeerId, data: &[u8]) -> Result<()> {
        self.queue(Some(peer), Bytes::copy_from_slice(data))
    }

    /// Sends `data` to every connected peer.
    pub fn broadcast(&self, data: &[u8]) -> Result<()> {
        self.queue(None, Bytes::copy_from_slice(data))
    }

    /// Messages received on the channel since the last call, oldest first. Never blocks.
    pub fn receive(&self) -> impl Iterator<Item = (PeerId, Bytes)> + '_ {
        self.inbox
            .try_iter()
            .inspect(|(_, m)| self.shared.taken(self.channel.0, m.len()))
    }
}
