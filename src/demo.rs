//! The demo: the gateway with its embedded engine, fed bundled calls as real RTP.
