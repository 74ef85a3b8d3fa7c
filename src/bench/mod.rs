//! Load generator (`asr-gateway bench`): the audio it plays, how it scores transcripts, how it draws a run.
pub mod wer;
