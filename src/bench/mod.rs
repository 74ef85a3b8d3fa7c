//! `asr-gateway bench`, the load generator: N concurrent RTP streams sent as Asterisk
//! would, a null engine to time the gateway alone, capacity search, reports and charts.

pub mod chart;
pub mod corpus;
pub mod events;
pub mod gateway;
pub mod histogram;
pub mod null_engine;
pub mod offline;
pub mod options;
pub mod output;
pub mod pacer;
pub mod progress;
pub mod report;
pub mod run;
pub mod streams;
pub mod wer;
