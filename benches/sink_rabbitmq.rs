//! Throughput of the rabbitmq sink with delivery confirmation (figures in benches/README.md).

fn main() {}
