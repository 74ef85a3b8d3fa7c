//! Throughput of the redis sink with delivery confirmation (figures in benches/README.md).

fn main() {}
