//! One file per wire protocol: each turns `StreamInput`s into the engine's requests and its responses into `EngineResult`s.

pub mod asr_v1;
pub mod grpc_status;
