//! Decoding workers: `workers` std threads, each owning one decoder (model replica), fed by a
//! bounded queue. Admission is decided up front so callers never block and memory never grows.
//!
//! Invariant: `in_flight` (jobs queued or being decoded) never exceeds `workers + queue`.
//! Finals may use the whole budget; interims only run when a worker is free (`in_flight < workers`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::EngineError;

/// Turns audio into text. One instance per worker thread; never shared.
pub trait Decoder: Send + 'static {
    /// `samples`: 16 kHz mono in [-1.0, 1.0]. `language`: an ISO 639-1 code, or `None` to detect.
    fn decode(&mut self, samples: &[f32], language: Option<&str>) -> Result<String, DecodeError>;
    /// Whether the model knows languages other than English.
    fn is_multilingual(&self) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decoding failed: {detail}")]
pub struct DecodeError {
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("engine busy: {workers} workers, queue of {queue} full")]
    Busy { workers: usize, queue: usize },
    /// The worker threads are gone (only after a bug: a decoder panicked on every thread).
    #[error("engine workers have stopped")]
    Stopped,
}

/// The reply to one job: the raw decoder output.
pub type Reply = oneshot::Receiver<Result<String, DecodeError>>;

struct Job {
    samples: Vec<f32>,
    language: Option<String>,
    reply: oneshot::Sender<Result<String, DecodeError>>,
}

/// Cheap to clone; the workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    tx: std_mpsc::SyncSender<Job>,
    in_flight: Arc<AtomicUsize>,
    workers: usize,
    queue: usize,
    multilingual: bool,
}

/// Releases one `in_flight` slot when dropped, also if the decoder panics.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// Start `workers` threads, each calling `load` for its own decoder; blocks until all have
    /// loaded, and fails with the first load error.
    pub fn start<D, F>(workers: usize, queue: usize, load: F) -> Result<Pool, EngineError>
    where
        D: Decoder,
        F: Fn() -> Result<D, EngineError> + Send + Sync + 'static,
    {
        if workers == 0 {
            return Err(EngineError::NoWorkers);
        }
        // Jobs in the channel are waiting ones, a subset of `in_flight`, so this never fills.
        let (tx, rx) = std_mpsc::sync_channel::<Job>(workers + queue);
        let rx = Arc::new(Mutex::new(rx));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(load);
        let (loaded_tx, loaded_rx) = std_mpsc::channel::<Result<bool, EngineError>>();
        for i in 0..workers {
            let (rx, in_flight, load, loaded_tx) = (
                rx.clone(),
                in_flight.clone(),
                load.clone(),
                loaded_tx.clone(),
            );
            std::thread::Builder::new()
                .name(format!("asr-decoder-{i}"))
                .spawn(move || {
                    let decoder = match load() {
                        Ok(d) => {
                            let _ = loaded_tx.send(Ok(d.is_multilingual()));
                            d
                        }
                        Err(e) => {
                            let _ = loaded_tx.send(Err(e));
                            return;
                        }
                    };
                    drop(loaded_tx);
                    work(decoder, &rx, &in_flight);
                })?;
        }
        drop(loaded_tx);
        let mut multilingual = false;
        for _ in 0..workers {
            match loaded_rx.recv() {
                Ok(Ok(m)) => multilingual = m,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(EngineError::ModelLoad {
                        dir: Default::default(),
                        detail: "a decoder thread died while loading".into(),
                    })
                }
            }
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                tx,
                in_flight,
                workers,
                queue,
                multilingual,
            }),
        })
    }

    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    pub fn is_multilingual(&self) -> bool {
        self.inner.multilingual
    }

    /// Queue a final decode, or fail at once with `Busy` when workers and queue are all taken.
    pub fn submit_final(
        &self,
        samples: Vec<f32>,
        language: Option<String>,
    ) -> Result<Reply, PoolError> {
        let budget = self.inner.workers + self.inner.queue;
        self.admit(budget, samples, language)
            .ok_or(PoolError::Busy {
                workers: self.inner.workers,
                queue: self.inner.queue,
            })?
    }

    /// Queue an interim decode only if a worker is free right now; `None` means skipped.
    pub fn try_submit_interim(&self, samples: Vec<f32>, language: Option<String>) -> Option<Reply> {
        self.admit(self.inner.workers, samples, language)?.ok()
    }

    /// `None` when `in_flight` is already at `limit`.
    fn admit(
        &self,
        limit: usize,
        samples: Vec<f32>,
        language: Option<String>,
    ) -> Option<Result<Reply, PoolError>> {
        let inner = &self.inner;
        inner
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            samples,
            language,
            reply,
        };
        Some(match inner.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(_) => {
                inner.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(PoolError::Stopped)
            }
        })
    }
}

/// A worker's loop: take the next job, skip it if its requester is gone, decode, reply.
fn work<D: Decoder>(mut decoder: D, rx: &Mutex<std_mpsc::Receiver<Job>>, in_flight: &AtomicUsize) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        let slot = Slot(in_flight);
        if job.reply.is_closed() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = decoder.decode(&job.samples, job.language.as_deref());
        tracing::debug!(
            audio_s = job.samples.len() as f64 / f64::from(super::SAMPLE_RATE_HZ),
            decode_s = started.elapsed().as_secs_f64(),
            "decoded"
        );
        // Free the slot before replying, so the requester may submit again at once.
        drop(slot);
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, Sender};

    /// Decodes to "n samples"; waits for a go-ahead per job when gated.
    pub(crate) struct FakeDecoder {
        pub gate: Option<Arc<Mutex<Receiver<()>>>>,
    }

    impl Decoder for FakeDecoder {
        fn decode(&mut self, samples: &[f32], _: Option<&str>) -> Result<String, DecodeError> {
            if let Some(gate) = &self.gate {
                gate.lock().unwrap().recv().unwrap();
            }
            Ok(format!("{} samples", samples.len()))
        }
        fn is_multilingual(&self) -> bool {
            false
        }
    }

    fn gated(workers: usize, queue: usize) -> (Pool, Sender<()>) {
        let (go, gate) = std_mpsc::channel();
        let gate = Arc::new(Mutex::new(gate));
        let pool = Pool::start(workers, queue, move || {
            Ok(FakeDecoder {
                gate: Some(gate.clone()),
            })
        })
        .unwrap();
        (pool, go)
    }

    #[tokio::test]
    async fn finals_beyond_workers_plus_queue_are_busy() {
        let (pool, go) = gated(1, 1);
        let a = pool.submit_final(vec![0.0; 3], None).unwrap();
        let b = pool.submit_final(vec![0.0; 4], None).unwrap();
        let busy = pool.submit_final(vec![0.0; 5], None).unwrap_err();
        assert_eq!(
            busy,
            PoolError::Busy {
                workers: 1,
                queue: 1
            }
        );
        assert_eq!(busy.to_string(), "engine busy: 1 workers, queue of 1 full");
        // Interims never take a queue slot.
        assert!(pool.try_submit_interim(vec![0.0; 6], None).is_none());
        go.send(()).unwrap();
        go.send(()).unwrap();
        assert_eq!(a.await.unwrap().unwrap(), "3 samples");
        assert_eq!(b.await.unwrap().unwrap(), "4 samples");
        // Both slots are free again.
        go.send(()).unwrap();
        let c = pool.try_submit_interim(vec![0.0; 7], None).unwrap();
        assert_eq!(c.await.unwrap().unwrap(), "7 samples");
    }

    #[test]
    fn zero_workers_is_an_error() {
        let r = Pool::start(0, 1, || Ok(FakeDecoder { gate: None }));
        assert!(matches!(r, Err(EngineError::NoWorkers)));
    }

    #[test]
    fn load_errors_surface() {
        let r = Pool::start(2, 1, || -> Result<FakeDecoder, _> {
            Err(EngineError::ModelLoad {
                dir: "m".into(),
                detail: "bad".into(),
            })
        });
        assert!(matches!(r, Err(EngineError::ModelLoad { .. })));
    }
}
