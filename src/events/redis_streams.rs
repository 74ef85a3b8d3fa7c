//! Redis Streams sink: XADD with an approximate MAXLEN cap, one stream per app or per call.
