//! gRPC statuses, from any gRPC engine, mapped to `AsrFailure`s with the cause an operator needs.

use std::time::Duration;

use tonic::{Code, Status};

use crate::asr::engine::limits::MAX_DETAIL_BYTES;
use crate::asr::types::AsrFailure;

/// Map a status (from the engine or from the transport) to a failure. `endpoint` names
/// the engine in `Unavailable`; `deadline` is what `DEADLINE_EXCEEDED` reports.
pub fn failure(s: &Status, endpoint: &str, deadline: Duration) -> AsrFailure {
    let mut detail = if s.message().is_empty() {
        s.code().description().to_string()
    } else {
        crate::ids::cut_to(s.message().to_string(), MAX_DETAIL_BYTES)
    };
    // A connection that failed says only "transport error"; its root cause (refused, an
    // untrusted certificate) is what the operator needs.
    if let Some(cause) = crate::tls::root_cause(s).filter(|c| !detail.contains(c.as_str())) {
        detail = format!("{detail}: {cause}");
    }
    match s.code() {
        Code::ResourceExhausted => AsrFailure::Busy {
            // Our engine's message starts with "engine busy: "; the failure says it already.
            detail: detail
                .strip_prefix("engine busy: ")
                .unwrap_or(&detail)
                .to_string(),
        },
        Code::Unavailable => AsrFailure::Unavailable {
            endpoint: endpoint.to_string(),
            detail,
        },
        Code::DeadlineExceeded => AsrFailure::Timeout { after: deadline },
        code if is_transport_error(s) => AsrFailure::Unavailable {
            endpoint: endpoint.to_string(),
            detail: format!("{detail} ({})", code_name(code)),
        },
        code => AsrFailure::StreamFailed {
            code: code_name(code).to_string(),
            detail,
        },
    }
}

/// The status came from the connection (connect error, reset, an engine that died with
/// the stream open), not from the engine.
fn is_transport_error(s: &Status) -> bool {
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>()
            || e.is::<std::io::Error>()
            || e.downcast_ref::<h2::Error>()
                .is_some_and(|h2| h2.is_io() || h2.is_go_away() || h2.is_reset())
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The canonical gRPC name of a status code, as in `asr.error` events.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let map = |s: Status| failure(&s, "http://engine:1", Duration::from_secs(2));
        let busy = map(Status::resource_exhausted(
            "engine busy: 1 workers, queue of 1 full",
        ));
        assert_eq!(busy.to_string(), "engine busy: 1 workers, queue of 1 full");
        assert!(matches!(
            map(Status::unavailable("x")),
            AsrFailure::Unavailable { .. }
        ));
        assert!(matches!(
            map(Status::deadline_exceeded("x")),
            AsrFailure::Timeout { .. }
        ));
        assert_eq!(
            map(Status::invalid_argument("bad rate")),
            AsrFailure::StreamFailed {
                code: "INVALID_ARGUMENT".into(),
                detail: "bad rate".into()
            }
        );
        let long = map(Status::unauthenticated("k".repeat(10_000)));
        assert!(long.to_string().len() < MAX_DETAIL_BYTES + 100, "{long}");
    }
}
