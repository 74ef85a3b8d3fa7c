//! Command consumer over nats: competing consumers, ack after handling, nack/dead-letter on rejection.
