//! The embedded engine, over real gRPC on 127.0.0.1, transcribes whole files as reference
//! Whisper does: faster-whisper from PyPI (scripts/whisper-reference.py, pinned in
//! tests/reference/requirements.txt) on the same model directory and the same files. Each
//! file's transcript must be within one word of the reference's (word-level edit distance on
//! lowercase words without punctuation). The files: tests/fixtures/*.wav and, when present,
//! tests/fixtures/speech/*.wav. WER against the human transcripts (a `.txt` beside the WAV, or
//! the folder's transcripts.tsv) is printed per folder, not asserted. Needs
//! models/whisper-tiny.en and the Python reference (scripts/setup.sh).
#![cfg(feature = "whisper")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use asr_gateway::asr::client::{AsrClient, ClientConfig};
use asr_gateway::asr::types::StreamOptions;
use asr_gateway::bench::wer;
use asr_gateway::tls::TlsSettings;
use asr_gateway::transcribe::recognize;

/// Guards against hangs only.
const GUARD: Duration = Duration::from_secs(300);

/// Every WAV the test transcribes, in a stable order.
fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [common::fixture(""), common::fixture("speech")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut wavs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wav"))
            .collect();
        wavs.sort();
        files.extend(wavs);
    }
    assert!(!files.is_empty(), "no WAV files in tests/fixtures");
    files
}

/// `file` as 16 kHz mono 16-bit samples, and the path of a file holding exactly those (the
/// file itself, or a sox conversion of it in `tmp`), so both sides hear the same samples.
fn load_16k(file: &Path, tmp: &Path) -> (Vec<i16>, PathBuf) {
    let spec = hound::WavReader::open(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .spec();
    let path = if (spec.sample_rate, spec.channels, spec.bits_per_sample) == (16_000, 1, 16)
        && spec.sample_format == hound::SampleFormat::Int
    {
        file.to_path_buf()
    } else {
        let out = tmp.join(file.file_name().unwrap());
        let ok = Command::new("sox")
            .arg(file)
            .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(&out)
            .status()
            .expect("sox is needed to convert test audio to 16 kHz (apt-get install sox)");
        assert!(ok.success(), "sox could not convert {}", file.display());
        out
    };
    let samples = hound::WavReader::open(&path)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    (samples, path)
}

/// One stream per file through the gateway's own client (`transcribe::recognize`): the
/// whole file, then end of stream; the finals joined.
async fn transcribe(client: &AsrClient, pcm: &[i16]) -> String {
    let options = StreamOptions {
        session_id: "whisper-reference".into(),
        call_id: "whisper-reference".into(),
        sample_rate: 16_000,
        language: "en-US".into(),
        interim_results: false,
        hints: vec![],
        engine_profile: String::new(),
    };
    recognize(client, options, pcm)
        .await
        .unwrap_or_else(|f| panic!("engine failed the stream: {f}"))
}

/// The human transcript of `wav`: `NAME.txt` beside it, or its line in the folder's
/// transcripts.tsv (`<file name>\t<text>`).
fn truth(wav: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(wav.with_extension("txt")) {
        return Some(text);
    }
    let tsv = std::fs::read_to_string(wav.with_file_name("transcripts.tsv")).ok()?;
    let name = wav.file_name()?.to_str()?;
    tsv.lines()
        .find_map(|l| l.split_once('\t').filter(|(f, _)| *f == name))
        .map(|(_, text)| text.to_string())
}

/// The reference's transcript of each of `files`, keyed by path.
fn reference(files: &[PathBuf]) -> HashMap<String, String> {
    let script = common::repo().join("scripts/whisper-reference.py");
    let how = "install it with: python3 -m pip install -r tests/reference/requirements.txt \
               (scripts/setup.sh does)";
    let out = Command::new("python3")
        .arg(&script)
        .arg("--model")
        .arg(common::model_dir())
        .args(files)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("the Python reference needs python3 ({e}); {how}"));
    assert!(
        out.status.success(),
        "the Python reference (scripts/whisper-reference.py) failed with {}: {}\n{how}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python reference printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Lowercase words without punctuation; Whisper's non-speech notes ("[BLANK_AUDIO]",
/// "(music)", "♪"), which the engine drops, are dropped from both sides.
fn normalise(text: &str) -> String {
    let (mut square, mut round) = (0u32, 0u32);
    let mut kept = String::new();
    for ch in text.chars() {
        match ch {
            '[' => square += 1,
            ']' => square = square.saturating_sub(1),
            '(' => round += 1,
            ')' => round = round.saturating_sub(1),
            '♪' => {}
            _ if square == 0 && round == 0 => kept.push(ch),
            _ => {}
        }
    }
    kept
}

/// Word edits between two transcripts, after `normalise` and the project's text
/// normalisation (`bench::wer`).
fn distance(a: &str, b: &str) -> usize {
    let count = wer::count(&normalise(a), &normalise(b));
    count.substitutions + count.deletions + count.insertions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_matches_reference_whisper_within_one_word() {
    let tmp = std::env::temp_dir().join(format!("asr-whisper-ref-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let files = corpus();
    let audio: Vec<(Vec<i16>, PathBuf)> = files.iter().map(|f| load_16k(f, &tmp)).collect();
    let paths: Vec<PathBuf> = audio.iter().map(|(_, p)| p.clone()).collect();

    // The reference runs on its own thread while the engine decodes.
    let reference = std::thread::spawn(move || reference(&paths));
    // One worker, as the reference runs on one thread.
    let engine = common::engine::start(1, 2, None).await;
    let client = AsrClient::new(ClientConfig {
        endpoint: engine.endpoint.clone(),
        tls: TlsSettings::default(),
        connect_timeout: Duration::from_secs(10),
        final_timeout: GUARD,
    })
    .unwrap();
    let mut ours = Vec::new();
    for (pcm, _) in &audio {
        ours.push(transcribe(&client, pcm).await);
    }
    let reference = reference
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    let _ = std::fs::remove_dir_all(&tmp);

    let mut failures = Vec::new();
    // Per folder: (engine errors, reference errors, words) against the human transcripts.
    let mut wer: Vec<(String, usize, usize, usize)> = Vec::new();
    for ((file, (_, path)), text) in files.iter().zip(&audio).zip(&ours) {
        let name = file
            .strip_prefix(common::fixture(""))
            .unwrap_or(file)
            .display()
            .to_string();
        let theirs = reference
            .get(&path.display().to_string())
            .unwrap_or_else(|| panic!("the reference left out {}", path.display()));
        let d = distance(text, theirs);
        eprintln!("{name}: distance {d}\n  engine:    {text:?}\n  reference: {theirs:?}");
        if let Some(truth) = truth(file) {
            let (e, r) = (distance(text, &truth), distance(theirs, &truth));
            let n = wer::count(&truth, "").reference_words;
            eprintln!("  errors vs the transcript: engine {e}/{n}, reference {r}/{n}",);
            let folder = file.parent().unwrap();
            let folder = folder
                .strip_prefix(common::repo())
                .unwrap_or(folder)
                .display()
                .to_string();
            match wer.iter_mut().find(|w| w.0 == folder) {
                Some(w) => (w.1, w.2, w.3) = (w.1 + e, w.2 + r, w.3 + n),
                None => wer.push((folder, e, r, n)),
            }
        }
        if text.contains("<|") || text.contains("|>") {
            failures.push(format!("{name}: a special token leaked into {text:?}"));
        }
        if d > 1 {
            failures.push(format!(
                "{name}: {d} words apart\n  engine:    {text:?}\n  reference: {theirs:?}"
            ));
        }
    }
    for (folder, e, r, n) in &wer {
        eprintln!(
            "WER in {folder}: engine {:.1} % ({e}/{n}), reference {:.1} % ({r}/{n})",
            100.0 * *e as f64 / *n as f64,
            100.0 * *r as f64 / *n as f64
        );
    }
    assert!(
        failures.is_empty(),
        "the engine does not match reference Whisper on {} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn edit_distance_counts_words() {
    assert_eq!(distance("Yes, I'm interested.", "yes i am interested"), 0);
    assert_eq!(distance("what is my balance", "what is balance"), 1);
    assert_eq!(
        distance("please call me back", "please fall me back tomorrow"),
        2
    );
    assert_eq!(distance("[BLANK_AUDIO] hello (music) ♪", "hello"), 0);
    assert_eq!(distance("", "one two"), 2);
}
