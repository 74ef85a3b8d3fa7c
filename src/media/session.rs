//! The per-call state machine gluing RTP, jitter, decode, resample and VAD; time is an argument.
