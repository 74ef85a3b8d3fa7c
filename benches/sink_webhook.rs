//! Throughput of the webhook sink with delivery confirmation (figures in benches/README.md).

fn main() {}
