//! Whole-file recognition without the media pipeline: the baseline the gateway's own WER is
//! judged against (`asr-gateway transcribe`, and the offline column of `bench`).
//!
//! Each file goes to the engine as one stream, whole, in the engine's rate. With a
//! telephone path it first takes the trip a call takes: down to 8 kHz, through u-law or
//! A-law (or 16-bit linear), and back up to the engine's rate.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::asr::client::{AsrClient, ClientError};
use crate::asr::types::{AsrAudio, AsrControl, AsrFailure, AsrRequest, AsrUpdate, StreamOptions};
use crate::bench::corpus::{self, Clip, CorpusError};
use crate::bench::wer::{self, WerCount};
use crate::config::Config;
use crate::media::codec::g711;
use crate::media::resample::{ResampleError, Resampler};
use crate::serve::{EmbeddedEngine, ServeError};

/// Telephone audio's sample rate, Hz.
const TELEPHONE_RATE: u32 = 8_000;
/// The client queues at most 256 requests per stream; a whole file goes in fewer pieces.
const MAX_PIECES: usize = 200;
/// Shortest piece sent, ms.
const MIN_PIECE_MS: usize = 100;

/// The trip a call's audio takes before the gateway hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TelephonePath {
    /// 8 kHz G.711 u-law (PCMU).
    Ulaw,
    /// 8 kHz G.711 A-law (PCMA).
    Alaw,
    /// 8 kHz 16-bit linear (slin).
    Linear,
}

impl TelephonePath {
    /// The path a bench codec implies: `pcmu`, `pcma` and 8 kHz `slin` pass through 8 kHz;
    /// wideband codecs (slin16, G.722, Opus) take none.
    pub fn for_codec(codec: &str) -> Option<Self> {
        match codec.trim().to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" => Some(Self::Ulaw),
            "pcma" | "alaw" => Some(Self::Alaw),
            "slin" | "l16" | "slin8" => Some(Self::Linear),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ulaw => "ulaw",
            Self::Alaw => "alaw",
            Self::Linear => "linear",
        }
    }
}

/// One file's outcome.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub name: String,
    /// Every final, joined; empty when the engine heard nothing or failed.
    pub text: String,
    /// Against the clip's reference transcript, when it has one.
    pub wer: Option<WerCount>,
    /// Why the engine gave no transcript.
    pub failure: Option<AsrFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("{clip}: {source}")]
    Resample { clip: String, source: ResampleError },
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Engine(#[from] ServeError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--engine {0:?}: use embedded or http(s)://host:port")]
    EngineChoice(String),
}

/// `asr-gateway transcribe`: recognize whole files offline, the baseline for `bench`.
#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// WAV files, or folders of them; references come from `<stem>.txt` beside a file or
    /// the folder's `transcripts.tsv`, as for `bench --audio`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `embedded` starts the built-in engine; `http(s)://host:port` uses a running one.
    /// Default: `asr.endpoint` if configured, else embedded.
    #[arg(long)]
    pub engine: Option<String>,
    /// Send each file through a telephone path first: 8 kHz u-law, A-law or linear.
    #[arg(long, value_enum)]
    pub telephone: Option<TelephonePath>,
    /// Language for the engine (default: `asr.language`).
    #[arg(long)]
    pub language: Option<String>,
}

/// Run `transcribe`: start or reach the engine, recognize every file, stop the engine.
pub async fn run(
    mut config: Config,
    args: &TranscribeArgs,
) -> Result<Vec<FileResult>, TranscribeError> {
    // A private engine: any free loopback port, whatever a running gateway holds.
    config.engine.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut clips = Vec::new();
    for path in &args.files {
        clips.extend(corpus::load(path)?);
    }
    let choice = args
        .engine
        .clone()
        .or_else(|| config.asr.endpoint.clone())
        .unwrap_or_else(|| "embedded".into());
    let embedded = match choice.as_str() {
        "embedded" => Some(EmbeddedEngine::start(&config).await?),
        url if url.starts_with("http://") || url.starts_with("https://") => None,
        other => return Err(TranscribeError::EngineChoice(other.to_owned())),
    };
    let endpoint = embedded
        .as_ref()
        .map_or(choice.clone(), |e| e.endpoint().to_owned());
    let client = AsrClient::new(config.client(endpoint))?;
    let language = args.language.as_deref().unwrap_or(&config.asr.language);
    let results = transcribe_clips(
        &client,
        &clips,
        args.telephone,
        config.asr.sample_rate,
        language,
    )
    .await;
    if let Some(engine) = embedded {
        engine.stop().await;
    }
    results
}

impl FileResult {
    /// `name<TAB>WER %<TAB>text` (WER `-` without a reference; the failure instead of text).
    pub fn line(&self) -> String {
        let wer = self
            .wer
            .and_then(|w| w.wer())
            .map_or("-".to_owned(), |w| format!("{:.1}%", w * 100.0));
        let text = match &self.failure {
            Some(f) => format!("[{}: {f}]", f.code()),
            None => self.text.clone(),
        };
        format!("{}\t{wer}\t{text}", self.name)
    }
}

/// The whole of `samples` at `from` Hz, resampled to `to` Hz, aligned (the filter's delay
/// removed) and as long as the input.
pub fn resample_whole(samples: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    let mut resampler = Resampler::new(from, to)?;
    let delay = resampler.delay();
    let mut out = Vec::with_capacity(samples.len() * to as usize / from as usize + delay);
    resampler.process(samples, &mut out);
    resampler.flush(&mut out);
    let len = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    out.drain(..delay.min(out.len()));
    out.truncate(len);
    Ok(out)
}

/// What the engine would hear of `samples` (at `rate` Hz) via `path`, at `engine_rate`.
pub fn engine_audio(
    samples: &[i16],
    rate: u32,
    path: Option<TelephonePath>,
    engine_rate: u32,
) -> Result<Vec<i16>, ResampleError> {
    let Some(path) = path else {
        return resample_whole(samples, rate, engine_rate);
    };
    let narrow = resample_whole(samples, rate, TELEPHONE_RATE)?;
    let heard = match path {
        TelephonePath::Ulaw => {
            let bytes: Vec<u8> = narrow.iter().map(|&s| g711::encode_ulaw(s)).collect();
            let mut pcm = Vec::with_capacity(bytes.len());
            g711::decode_ulaw(&bytes, &mut pcm);
            pcm
        }
        TelephonePath::Alaw => {
            let bytes: Vec<u8> = narrow.iter().map(|&s| g711::encode_alaw(s)).collect();
            let mut pcm = Vec::with_capacity(bytes.len());
            g711::decode_alaw(&bytes, &mut pcm);
            pcm
        }
        TelephonePath::Linear => narrow,
    };
    resample_whole(&heard, TELEPHONE_RATE, engine_rate)
}

/// Recognize `audio` (mono, `options.sample_rate`) as one whole stream; every final joined.
pub async fn recognize(
    client: &AsrClient,
    options: StreamOptions,
    audio: &[i16],
) -> Result<String, AsrFailure> {
    let rate = options.sample_rate as usize;
    let piece = (rate * MIN_PIECE_MS / 1000).max(audio.len().div_ceil(MAX_PIECES));
    let (requests, requests_rx) = mpsc::channel(MAX_PIECES + 4);
    let (updates_tx, mut updates) = mpsc::channel(64);
    let session = client.spawn_session(options, requests_rx, updates_tx);
    let mut batch = vec![AsrRequest::Control(AsrControl::Begin {
        stream: 1,
        offset_ms: 0,
    })];
    for (k, samples) in audio.chunks(piece.max(1)).enumerate() {
        batch.push(AsrRequest::Audio(AsrAudio {
            stream: 1,
            offset_ms: (k * piece * 1000 / rate) as u64,
            samples: samples.to_vec(),
        }));
    }
    batch.push(AsrRequest::Control(AsrControl::End { stream: 1 }));
    for request in batch {
        // The channel holds the whole batch; a send fails only if the client is gone.
        if requests.send(request).await.is_err() {
            break;
        }
    }
    drop(requests);
    let mut finals = Vec::new();
    let mut failure = None;
    while let Some(update) = updates.recv().await {
        match update {
            AsrUpdate::Result(h) if h.is_final && !h.text.trim().is_empty() => {
                finals.push(h.text.trim().to_owned())
            }
            AsrUpdate::Result(_) | AsrUpdate::Closed { .. } | AsrUpdate::EngineSwitched { .. } => {}
            AsrUpdate::Failed { failure: f, .. } => failure = Some(f),
        }
    }
    let _ = session.await;
    match failure {
        Some(f) => Err(f),
        None => Ok(finals.join(" ")),
    }
}

/// Transcribe every clip in turn through `path`, scoring each against its reference.
pub async fn transcribe_clips(
    client: &AsrClient,
    clips: &[Clip],
    path: Option<TelephonePath>,
    engine_rate: u32,
    language: &str,
) -> Result<Vec<FileResult>, TranscribeError> {
    let mut results = Vec::with_capacity(clips.len());
    for (k, clip) in clips.iter().enumerate() {
        let audio =
            engine_audio(&clip.samples, clip.sample_rate, path, engine_rate).map_err(|source| {
                TranscribeError::Resample {
                    clip: clip.name.clone(),
                    source,
                }
            })?;
        let options = StreamOptions {
            session_id: format!("transcribe-{k}"),
            call_id: format!("transcribe-{k}"),
            sample_rate: engine_rate,
            language: language.to_owned(),
            interim_results: false,
            hints: Vec::new(),
            engine_profile: String::new(),
        };
        let (text, failure) = match recognize(client, options, &audio).await {
            Ok(text) => (text, None),
            Err(f) => (String::new(), Some(f)),
        };
        let wer = clip.transcript.as_deref().map(|r| wer::count(r, &text));
        results.push(FileResult {
            name: clip.name.clone(),
            text,
            wer,
            failure,
        });
    }
    Ok(results)
}

/// The pooled count over every result with a reference.
pub fn pooled_wer(results: &[FileResult]) -> Option<WerCount> {
    let mut total: Option<WerCount> = None;
    for count in results.iter().filter_map(|r| r.wer) {
        *total.get_or_insert_with(WerCount::default) += count;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (10_000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn whole_file_resampling_keeps_length_and_alignment() {
        let input = tone(16_000, 440.0, 16_000);
        let back = resample_whole(
            &resample_whole(&input, 16_000, 8_000).unwrap(),
            8_000,
            16_000,
        )
        .unwrap();
        assert_eq!(back.len(), input.len());
        // Aligned: the middle matches the original closely, sample for sample.
        let err: f64 = (4000..12000)
            .map(|k| (f64::from(back[k]) - f64::from(input[k])).abs())
            .sum::<f64>()
            / 8000.0;
        assert!(err < 150.0, "mean error {err}");
    }

    #[test]
    fn telephone_paths_band_limit_and_quantize() {
        let input = tone(16_000, 5_000.0, 16_000);
        // 5 kHz is above the 4 kHz telephone band: the trip removes it.
        for path in [
            TelephonePath::Ulaw,
            TelephonePath::Alaw,
            TelephonePath::Linear,
        ] {
            let out = engine_audio(&input, 16_000, Some(path), 16_000).unwrap();
            assert_eq!(out.len(), input.len());
            let peak = out[2000..14000]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap();
            assert!(peak < 1_500, "{path:?}: {peak}");
        }
        // Without a path the tone is kept.
        let out = engine_audio(&input, 16_000, None, 16_000).unwrap();
        assert_eq!(out, input);
        // u-law quantizes: a 440 Hz tone comes back close, not equal.
        let speech_band = tone(8_000, 440.0, 8_000);
        let out = engine_audio(&speech_band, 8_000, Some(TelephonePath::Ulaw), 8_000).unwrap();
        assert_ne!(out, speech_band);
        assert!(out
            .iter()
            .zip(&speech_band)
            .all(|(a, b)| (i32::from(*a) - i32::from(*b)).abs() < 400));
    }

    #[test]
    fn bench_codecs_name_their_telephone_path() {
        assert_eq!(TelephonePath::for_codec("PCMU"), Some(TelephonePath::Ulaw));
        assert_eq!(TelephonePath::for_codec("pcma"), Some(TelephonePath::Alaw));
        assert_eq!(
            TelephonePath::for_codec("slin"),
            Some(TelephonePath::Linear)
        );
        assert_eq!(TelephonePath::for_codec("slin16"), None);
        assert_eq!(TelephonePath::for_codec("opus"), None);
    }
}
