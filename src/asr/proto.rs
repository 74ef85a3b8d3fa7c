//! Generated types and stubs for `proto/asr/v1/asr.proto`.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("asr.v1");
