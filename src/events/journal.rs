//! Append-only on-disk journal of outgoing events, one directory per sink, in segments.
