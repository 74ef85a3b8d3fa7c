//! Tests of corpus loading: temp folders written here, and the sample calls in tests/fixtures.

use super::*;

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("asr-corpus-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }

    /// 16 kHz mono: `silence_ms` of zeros, `tone_ms` of a loud square wave, `silence_ms` again.
    fn wav(&self, name: &str, silence_ms: usize, tone_ms: usize) -> PathBuf {
        let path = self.0.join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        let (quiet, loud) = (silence_ms * 16, tone_ms * 16);
        for i in 0..quiet + loud + quiet {
            let tone = i >= quiet && i < quiet + loud;
            let s = if !tone {
                0
            } else if i % 40 < 20 {
                8000
            } else {
                -8000
            };
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn fixture_folder_loads_sorted_with_sidecar_transcripts() {
    let clips = load(&fixtures()).unwrap();
    let names: Vec<_> = clips.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["balance", "call-back", "two-phrases", "yes-interested"]
    );
    for clip in &clips {
        assert_eq!(clip.sample_rate, 16000, "{}", clip.name);
        assert!(clip.transcript.is_some(), "{} has a sidecar", clip.name);
    }
}

#[test]
fn fixture_balance_has_transcript_and_speech_end_before_trailing_silence() {
    let clips = load(&fixtures().join("balance.wav")).unwrap();
    assert_eq!(clips.len(), 1);
    let clip = &clips[0];
    assert_eq!(clip.name, "balance");
    assert_eq!(clip.transcript.as_deref(), Some("what is my balance"));
    let duration_ms = clip.samples.len() as u64 * 1000 / 16000;
    let end = clip.speech_end_ms.unwrap();
    // README: 0.5 s lead-in, speech, then 1.2 s of zeros. The end is rounded up to the
    // 20 ms frame that holds the last speech, so at most one frame into the silence.
    let silence_from = duration_ms - 1200;
    assert!(end > 500, "speech ends at {end} ms");
    assert!(
        end <= silence_from + 20,
        "{end} ms; silence from {silence_from} ms"
    );
    assert!(end + 60 >= silence_from, "{end} ms is too early");
}

#[test]
fn fixture_two_phrases_ends_after_second_phrase() {
    let clip = load(&fixtures().join("two-phrases.wav")).unwrap().remove(0);
    // Phrase two starts at about sample 54 937 (3.43 s).
    assert!(clip.speech_end_ms.unwrap() > 3434);
}

#[test]
fn speech_end_of_synthetic_audio() {
    let samples: Vec<i16> = (0..16000)
        .map(|i| if i < 8000 { 5000 } else { 0 })
        .collect();
    assert_eq!(speech_end_ms(&samples, 16000), Some(500));
    assert_eq!(speech_end_ms(&[0; 16000], 16000), None);
    // Faint hiss under the absolute floor is not speech either.
    assert_eq!(speech_end_ms(&[30; 16000], 16000), None);
    // A short last frame ends where the audio ends: 330 samples at 16 kHz = 20.6 ms.
    assert_eq!(speech_end_ms(&[5000; 330], 16000), Some(20));
    assert_eq!(speech_end_ms(&[], 16000), None);
    assert_eq!(speech_end_ms(&[5000; 10], 0), None);
}

#[test]
fn quiet_tail_below_peak_is_not_speech() {
    // Loud first half, then a tail 40 dB down (but above the floor): speech ends at the half.
    let samples: Vec<i16> = (0..16000)
        .map(|i| if i < 8000 { 20000 } else { 200 })
        .collect();
    assert_eq!(speech_end_ms(&samples, 16000), Some(500));
}

#[test]
fn sidecar_wins_over_tsv_and_tsv_matches_name_or_stem() {
    let dir = TempDir::new("tsv");
    dir.wav("a.wav", 100, 300);
    dir.wav("b.wav", 100, 300);
    dir.wav("c.wav", 100, 300);
    dir.wav("d.wav", 100, 300);
    dir.write("a.txt", "  from the sidecar \n");
    dir.write("d.txt", "\n");
    dir.write(
        "transcripts.tsv",
        "# reference texts\n\na.wav\tfrom the tsv\nb.wav\tbee\n  \nc\tsee it\r\nd\tdee\n",
    );
    dir.write("other.tsv", "not\ta candidate\n");
    let clips = load(&dir.0).unwrap();
    let got: Vec<_> = clips.iter().map(|c| c.transcript.as_deref()).collect();
    assert_eq!(
        got,
        [Some("from the sidecar"), Some("bee"), Some("see it"), None]
    );
    assert_eq!(clips[0].path, dir.0.join("a.wav"));
    assert_eq!(clips[0].speech_end_ms, Some(400));
}

#[test]
fn single_tsv_with_any_name_is_used() {
    let dir = TempDir::new("anytsv");
    dir.wav("x.wav", 0, 200);
    dir.write("refs.tsv", "x\thello there\n");
    let clip = load(&dir.0.join("x.wav")).unwrap().remove(0);
    assert_eq!(clip.transcript.as_deref(), Some("hello there"));
}

#[test]
fn malformed_tsv_line_names_file_and_line() {
    let dir = TempDir::new("badtsv");
    dir.wav("x.wav", 0, 200);
    dir.write(
        "transcripts.tsv",
        "# header\nx.wav\tfine\ny.wav no tab here\n",
    );
    let err = load(&dir.0).unwrap_err();
    assert!(
        matches!(err, CorpusError::TsvLine { line: 3, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("transcripts.tsv line 3"), "{text}");

    dir.write("transcripts.tsv", "x\tone\nx\ttwo\n");
    let err = load(&dir.0).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("line 1"), "{err}");
}

#[test]
fn several_tsvs_without_transcripts_tsv_is_an_error() {
    let dir = TempDir::new("twotsv");
    dir.wav("x.wav", 0, 200);
    dir.write("one.tsv", "x\tone\n");
    dir.write("two.tsv", "x\ttwo\n");
    assert!(matches!(
        load(&dir.0).unwrap_err(),
        CorpusError::SeveralTsv { .. }
    ));
}

#[test]
fn folder_without_wavs_is_an_error_naming_it() {
    let dir = TempDir::new("empty");
    dir.write("notes.txt", "no audio here");
    let err = load(&dir.0).unwrap_err();
    assert!(matches!(err, CorpusError::NoWavs(_)), "{err:?}");
    assert!(err.to_string().contains(&dir.0.display().to_string()));
}

#[test]
fn wav_errors_name_the_file() {
    let dir = TempDir::new("badwav");
    dir.write("broken.wav", "this is not RIFF");
    let err = load(&dir.0).unwrap_err().to_string();
    assert!(err.contains("broken.wav"), "{err}");
    let missing = dir.0.join("missing.wav");
    let err = load(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.wav"), "{err}");
}

#[test]
fn stereo_wav_is_rejected_by_name() {
    let dir = TempDir::new("stereo");
    let path = dir.0.join("two.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for _ in 0..160 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("two.wav") && err.contains("mono"), "{err}");
}
