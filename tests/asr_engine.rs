//! The gRPC client against the real embedded Whisper engine over real gRPC on 127.0.0.1.
//! Speech is synthesised with espeak-ng and converted to 16 kHz with sox.
//! Needs models/whisper-tiny.en (run scripts/fetch-model.sh first) and the `whisper` feature.
#![cfg(feature = "whisper")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use asr_gateway::asr::client::{AsrClient, ClientConfig};
use asr_gateway::asr::embedded::{self, EngineConfig, EngineError};
use asr_gateway::asr::types::{
    AsrAudio, AsrControl, AsrFailure, AsrRequest, AsrUpdate, Hypothesis, StreamOptions,
};
use common::engine::Engine;
use tokio::sync::mpsc;

/// Guards against hangs only; nothing here asserts speed.
const GUARD: Duration = Duration::from_secs(120);
/// 20 ms at 16 kHz.
const FRAME: usize = 320;

/// `text` spoken by espeak-ng, as 16 kHz mono PCM.
fn speech(text: &str) -> Vec<i16> {
    let tmp = std::env::temp_dir();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let raw = tmp.join(format!("asr-espeak-{tag}.wav"));
    let wav = tmp.join(format!("asr-16k-{tag}.wav"));
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng is needed to synthesise test speech (apt-get install espeak-ng)");
    assert!(ok.success(), "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .status()
        .expect("sox is needed to resample test speech (apt-get install sox)");
    assert!(ok.success(), "sox failed");
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let samples = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let _ = std::fs::remove_file(raw);
    let _ = std::fs::remove_file(wav);
    samples
}

/// Lowercase words without punctuation.
fn words(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every word of `expected` occurs in `text` (Whisper may write "I'm" for "I am").
fn has_words(text: &str, expected: &str) -> bool {
    let got = words(text);
    let got: Vec<&str> = got.split(' ').collect();
    expected.split(' ').all(|w| got.contains(&w))
}

async fn engine(workers: usize, queue: usize, interim: Option<Duration>) -> Engine {
    common::engine::start(workers, queue, interim).await
}

fn client(e: &Engine) -> AsrClient {
    AsrClient::new(ClientConfig {
        tls: Default::default(),
        endpoint: e.endpoint.clone(),
        connect_timeout: Duration::from_secs(5),
        final_timeout: GUARD,
    })
    .unwrap()
}

fn options(interim_results: bool) -> StreamOptions {
    StreamOptions {
        session_id: "test-session".into(),
        call_id: "test-call".into(),
        sample_rate: 16_000,
        language: "en-US".into(),
        interim_results,
        hints: vec![],
        engine_profile: String::new(),
    }
}

fn control(c: AsrControl) -> AsrRequest {
    AsrRequest::Control(c)
}

/// `pcm` as 20 ms frames of `stream`, starting at media time `start_ms`.
fn frames(stream: u32, start_ms: u64, pcm: &[i16]) -> Vec<AsrRequest> {
    pcm.chunks(FRAME)
        .enumerate()
        .map(|(i, f)| {
            AsrRequest::Audio(AsrAudio {
                stream,
                offset_ms: start_ms + i as u64 * 20,
                samples: f.to_vec(),
            })
        })
        .collect()
}

/// One utterance-mode stream: Begin, audio, End.
fn utterance(stream: u32, start_ms: u64, pcm: &[i16]) -> Vec<AsrRequest> {
    let mut r = vec![control(AsrControl::Begin {
        stream,
        offset_ms: start_ms,
    })];
    r.extend(frames(stream, start_ms, pcm));
    r.push(control(AsrControl::End { stream }));
    r
}

async fn session(c: &AsrClient, opts: StreamOptions, reqs: Vec<AsrRequest>) -> Vec<AsrUpdate> {
    let (req_tx, req_rx) = mpsc::channel(64);
    let (upd_tx, mut upd_rx) = mpsc::channel(64);
    let task = c.spawn_session(opts, req_rx, upd_tx);
    tokio::spawn(async move {
        for r in reqs {
            req_tx.send(r).await.unwrap();
        }
    });
    let mut all = vec![];
    while let Some(u) = tokio::time::timeout(GUARD, upd_rx.recv()).await.unwrap() {
        all.push(u);
    }
    task.await.unwrap();
    all
}

fn finals(updates: &[AsrUpdate]) -> Vec<&Hypothesis> {
    updates
        .iter()
        .filter_map(|u| match u {
            AsrUpdate::Result(h) if h.is_final => Some(h),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_utterances_are_transcribed() {
    let e = engine(2, 4, None).await;
    let c = client(&e);
    let one = speech("yes, I am interested");
    let two = speech("please call me back tomorrow");
    // Stream 2 begins right after stream 1 ends, while 1's final is still being decoded.
    let mut reqs = utterance(1, 1000, &one);
    reqs.extend(utterance(2, 5000, &two));
    let started = Instant::now();
    let updates = session(&c, options(false), reqs).await;
    eprintln!(
        "2 utterances (2 workers) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let f = finals(&updates);
    assert_eq!(f.len(), 2, "{updates:?}");
    let h1 = f
        .iter()
        .find(|h| h.stream == 1)
        .expect("final for stream 1");
    let h2 = f
        .iter()
        .find(|h| h.stream == 2)
        .expect("final for stream 2");
    assert!(has_words(&h1.text, "yes interested"), "{h1:?}");
    assert!(words(&h2.text).contains("call me back tomorrow"), "{h2:?}");
    assert_eq!((h1.utterance, h2.utterance), (1, 2));
    assert_eq!(h1.start_ms, 1000);
    assert_eq!(h1.end_ms, 1000 + one.len() as u64 * 1000 / 16_000);
    assert_eq!(h1.confidence, 0.0);
    assert!(updates.contains(&AsrUpdate::Closed { stream: 1 }));
    assert!(updates.contains(&AsrUpdate::Closed { stream: 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_mode_finalizes_at_each_end_of_speech() {
    let e = engine(1, 2, None).await;
    let c = client(&e);
    let one = speech("what is my balance");
    let two = speech("yes, I am interested");
    let mut reqs = vec![control(AsrControl::Begin {
        stream: 0,
        offset_ms: 0,
    })];
    reqs.extend(frames(0, 0, &one));
    reqs.push(control(AsrControl::EndOfSpeech {
        stream: 0,
        utterance: 1,
        offset_ms: 3000,
    }));
    reqs.extend(frames(0, 4000, &two));
    reqs.push(control(AsrControl::End { stream: 0 }));
    let started = Instant::now();
    let updates = session(&c, options(false), reqs).await;
    // Reported, not asserted: one worker decodes both utterances one after the other.
    eprintln!(
        "call mode: 2 utterances, 1 worker: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let f = finals(&updates);
    assert_eq!(f.len(), 2, "{updates:?}");
    assert_eq!((f[0].stream, f[0].utterance), (0, 1));
    assert!(words(&f[0].text).contains("balance"), "{:?}", f[0]);
    // The trailing utterance has no engine id: the client counts it as the second.
    assert_eq!((f[1].stream, f[1].utterance), (0, 2));
    assert!(has_words(&f[1].text, "yes interested"), "{:?}", f[1]);
    assert_eq!(f[1].start_ms, 4000);
    assert_eq!(updates.last(), Some(&AsrUpdate::Closed { stream: 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_results_while_the_utterance_grows() {
    let e = engine(2, 2, Some(Duration::from_millis(200))).await;
    let c = client(&e);
    let pcm = speech("please call me back tomorrow");
    let (first, rest) = pcm.split_at(pcm.len() * 2 / 3);
    let (req_tx, req_rx) = mpsc::channel(64);
    let (upd_tx, mut upd_rx) = mpsc::channel(64);
    let task = c.spawn_session(options(true), req_rx, upd_tx);
    req_tx
        .send(control(AsrControl::Begin {
            stream: 1,
            offset_ms: 0,
        }))
        .await
        .unwrap();
    for r in frames(1, 0, first) {
        req_tx.send(r).await.unwrap();
    }
    // The utterance is paused half-way; an idle worker gives an interim.
    let interim = match tokio::time::timeout(GUARD, upd_rx.recv()).await.unwrap() {
        Some(AsrUpdate::Result(h)) => h,
        other => panic!("expected an interim, got {other:?}"),
    };
    assert!(!interim.is_final);
    assert!(!interim.text.is_empty());
    assert_eq!(interim.utterance, 1);
    let first_ms = first.len() as u64 * 1000 / 16_000;
    for r in frames(1, first_ms, rest) {
        req_tx.send(r).await.unwrap();
    }
    req_tx
        .send(control(AsrControl::End { stream: 1 }))
        .await
        .unwrap();
    drop(req_tx);
    let mut updates = vec![];
    while let Some(u) = tokio::time::timeout(GUARD, upd_rx.recv()).await.unwrap() {
        updates.push(u);
    }
    task.await.unwrap();
    let f = finals(&updates);
    assert_eq!(f.len(), 1, "{updates:?}");
    assert!(
        words(&f[0].text).contains("call me back tomorrow"),
        "{:?}",
        f[0]
    );
    assert_eq!(updates.last(), Some(&AsrUpdate::Closed { stream: 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_engine_answers_busy_and_transcribes_the_rest() {
    let e = engine(1, 1, None).await;
    let c = client(&e);
    let pcm = speech("what is my balance");
    let sessions: Vec<_> = (0..6)
        .map(|_| {
            let (c, pcm) = (c.clone(), pcm.clone());
            tokio::spawn(async move { session(&c, options(false), utterance(1, 0, &pcm)).await })
        })
        .collect();
    let (mut busy, mut transcribed) = (0, 0);
    for s in sessions {
        let updates = s.await.unwrap();
        match &updates[..] {
            [AsrUpdate::Failed {
                stream: 1,
                failure: AsrFailure::Busy { detail },
            }] => {
                assert_eq!(detail, "1 workers, queue of 1 full");
                busy += 1;
            }
            [AsrUpdate::Result(h), AsrUpdate::Closed { stream: 1 }] if h.is_final => {
                assert!(words(&h.text).contains("balance"), "{h:?}");
                transcribed += 1;
            }
            other => panic!("unexpected updates {other:?}"),
        }
    }
    assert!(busy >= 1, "no stream was refused");
    assert!(transcribed >= 1, "no stream was transcribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_audio_and_bad_config() {
    let e = engine(1, 1, None).await;
    let c = client(&e);
    // 50 ms: answered empty without decoding.
    let updates = session(&c, options(false), utterance(1, 0, &[500; 800])).await;
    match &updates[..] {
        [AsrUpdate::Result(h), AsrUpdate::Closed { stream: 1 }] => {
            assert!(h.is_final && h.text.is_empty(), "{h:?}");
        }
        other => panic!("unexpected updates {other:?}"),
    }
    let eight_k = StreamOptions {
        sample_rate: 8000,
        ..options(false)
    };
    let updates = session(&c, eight_k, utterance(1, 0, &[0; 1600])).await;
    match &updates[..] {
        [AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::StreamFailed { code, detail },
        }] => {
            assert_eq!(code, "INVALID_ARGUMENT");
            assert!(detail.contains("16000 Hz"), "{detail}");
        }
        other => panic!("unexpected updates {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_model_file_is_named_at_startup() {
    let dir = std::env::temp_dir().join(format!("asr-empty-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = EngineConfig {
        model_dir: dir.clone(),
        workers: 1,
        queue: 1,
        interim_interval: None,
    };
    let err = embedded::serve(config, listener, async {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::ModelFileMissing {
                file: "model.bin",
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
