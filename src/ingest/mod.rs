//! Media ingest: the UDP RTP port pool and per-session tasks.
