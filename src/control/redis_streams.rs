//! Command consumer over redis_streams: competing consumers, ack after handling, nack/dead-letter on rejection.
