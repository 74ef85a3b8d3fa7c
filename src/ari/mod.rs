//! Asterisk REST Interface (ARI): typed models of the events and objects the gateway uses.

pub mod model;

pub use model::{
    CallerId, Channel, ChannelState, DialplanCep, Event, ExternalMediaChannel, Message, ParseError,
};
