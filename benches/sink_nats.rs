//! Throughput of the nats sink with delivery confirmation (figures in benches/README.md).

fn main() {}
