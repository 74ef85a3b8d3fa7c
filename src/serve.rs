//! `serve`: wires config, engine, ingest, control and sinks into one running gateway.
