//! Asterisk REST Interface (ARI): models, REST client, events socket, and the controller
//! that taps calls (snoop + externalMedia + bridge) in Stasis and listen mode.

pub mod client;
pub mod config;
pub mod controller;
pub mod events;
pub mod model;
pub mod outcome;
pub mod tap;
pub mod websocket;

pub use model::{
    CallerId, Channel, ChannelState, DialplanCep, Event, ExternalMediaChannel, Message, ParseError,
};
