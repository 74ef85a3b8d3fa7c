//! Command consumer over rabbitmq: competing consumers, ack after handling, nack/dead-letter on rejection.
