//! The embedded Whisper engine served in-process on a free loopback port, for the tests
//! that talk to it over gRPC.

use std::time::Duration;

use asr_gateway::asr::embedded::{self, EngineConfig};
use tokio::sync::oneshot;

/// A running engine; dropping it stops the server.
pub struct Engine {
    pub endpoint: String,
    _stop: oneshot::Sender<()>,
}

/// Serve models/whisper-tiny.en with these pool settings. Needs a Tokio runtime.
pub async fn start(workers: usize, queue: usize, interim: Option<Duration>) -> Engine {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let config = EngineConfig {
        model_dir: super::model_dir(),
        workers,
        queue,
        interim_interval: interim,
    };
    tokio::spawn(async move {
        embedded::serve(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("engine failed")
    });
    Engine {
        endpoint,
        _stop: stop,
    }
}
