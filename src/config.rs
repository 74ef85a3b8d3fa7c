//! Typed configuration from TOML and environment, validated before anything binds.
