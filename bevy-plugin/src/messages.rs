//! Typed messages: one registration per message type and channel; then games write
//! [`Outgoing<T>`] and read [`Received<T>`] with Bevy's own message reader and writer.

use std::collections::HashSet;
use std::marker::PhantomData;

use bevy::ecs::message::Message;
use bevy::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use squadlink::{Channel, PeerId};

use crate::plugin::{Peer, PeerEntities, Pump, SquadlinkError, SquadlinkSession, SquadlinkSet};

/// Who an [`Outgoing`] message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every connected peer.
    All,
    /// One peer, by its entity.
    Peer(Entity),
}

/// A message to send, written with `MessageWriter<Outgoing<T>>`; sent in `PostUpdate`.
#[derive(Message, Debug, Clone)]
pub struct Outgoing<T: Send + Sync + 'static> {
    /// Recipients.
    pub to: Target,
    /// The message.
    pub message: T,
}

impl<T: Send + Sync + 'static> Outgoing<T> {
    /// To every connected peer.
    pub fn to_all(message: T) -> Self {
        Self {
            to: Target::All,
            message,
        }
    }

    /// To one peer.
    pub fn to(peer: Entity, message: T) -> Self {
        Self {
            to: Target::Peer(peer),
            message,
        }
    }
}

/// A message that arrived, read with `MessageReader<Received<T>>` (filled in `PreUpdate`).
#[derive(Message, Debug, Clone)]
pub struct Received<T: Send + Sync + 'static> {
    /// The sender's entity (it has a [`Peer`] component).
    pub from: Entity,
    /// The sender's peer id.
    pub peer: PeerId,
    /// The message.
    pub message: T,
}

/// Channels that already carry a message type.
#[derive(Resource, Default)]
struct TypedChannels(HashSet<usize>);

#[derive(Resource)]
struct ChannelOf<T> {
    channel: Channel,
    _marker: PhantomData<fn() -> T>,
}

/// Registers typed messages on an [`App`].
pub trait SquadlinkAppExt {
    /// Carries `T` on `channel` (serde + bincode): enables `MessageWriter<Outgoing<T>>` and
    /// `MessageReader<Received<T>>`. A channel carries one message type; to send several,
    /// use an enum.
    fn add_squadlink_message<T>(&mut self, channel: Channel) -> &mut Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static;
}

impl SquadlinkAppExt for App {
    fn add_squadlink_message<T>(&mut self, channel: Channel) -> &mut Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let mut taken = self
            .world_mut()
            .get_resource_or_insert_with(TypedChannels::default);
        if !taken.0.insert(channel.0) {
            error!(
                "squadlink: channel {} already carries a message type; {} was not registered (use an enum for several types)",
                channel.0,
                std::any::type_name::<T>()
            );
            return self;
        }
        self.insert_resource(ChannelOf::<T> {
            channel,
            _marker: PhantomData,
        })
        .add_message::<Outgoing<T>>()
        .add_message::<Received<T>>()
        .add_systems(
            PreUpdate,
            receive_typed::<T>.in_set(SquadlinkSet::Receive).after(Pump),
        )
        .add_systems(PostUpdate, send_typed::<T>.in_set(SquadlinkSet::Send))
    }
}

fn receive_typed<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    mut commands: Commands,
    session: Option<Res<SquadlinkSession>>,
    channel: Res<ChannelOf<T>>,
    peers: Res<PeerEntities>,
    mut inbox: MessageWriter<Received<T>>,
) {
    let Some(session) = session else { return };
    for (peer, decoded) in session.receive_typed::<T>(channel.channel) {
        let Some(from) = peers.0.get(&peer).copied() else {
            continue;
        };
        match decoded {
            Ok(message) => {
                inbox.write(Received {
                    from,
                    peer,
                    message,
                });
            }
            Err(e) => {
                warn!("squadlink: undecodable message from {peer}: {e}");
                commands.trigger(SquadlinkError(e));
            }
        }
    }
}

fn send_typed<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    mut commands: Commands,
    session: Option<Res<SquadlinkSession>>,
    channel: Res<ChannelOf<T>>,
    mut outbox: MessageReader<Outgoing<T>>,
    peers: Query<&Peer>,
) {
    let Some(session) = session else {
        outbox.clear();
        return;
    };
    for out in outbox.read() {
        let sent = match out.to {
            Target::All => session.broadcast_typed(channel.channel, &out.message),
            Target::Peer(entity) => match peers.get(entity) {
                Ok(peer) => session.send_typed(peer.id, channel.channel, &out.message),
                Err(_) => continue,
            },
        };
        if let Err(e) = sent {
            warn!("squadlink: {e}");
            commands.trigger(SquadlinkError(e));
        }
    }
}
