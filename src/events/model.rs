//! Recognition event model: typed bodies and the CloudEvents 1.0 envelope.
