//! Load generator (`asr-gateway bench`): the audio it plays, how it scores transcripts, how it draws a run.
pub mod chart;
pub mod corpus;
pub mod wer;
