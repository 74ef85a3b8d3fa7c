//! Process-wide counters and histograms, rendered as Prometheus text.
