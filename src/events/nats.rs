//! NATS JetStream sink: stream created if missing, acked publishes, `Nats-Msg-Id` = event id.
