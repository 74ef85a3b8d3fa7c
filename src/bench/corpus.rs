//! The load generator's audio: WAV clips with their reference transcripts and where speech ends.
//!
//! A corpus is one WAV file or a folder of them (not recursive). A clip's reference
//! transcript comes from a sidecar `<stem>.txt` beside it, else from the folder's TSV
//! (`transcripts.tsv`, or the only `*.tsv` there) with lines `<file name or stem>\t<text>`.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::sender::{read_wav, SendError};

/// Analysis frame for `speech_end_ms`, ms.
const FRAME_MS: u64 = 20;
/// A frame is speech when its RMS is within this many dB of the loudest frame's RMS...
const SPEECH_BELOW_PEAK_DB: f64 = 35.0;
/// ...and above this absolute RMS (i16 full scale 32767; 100 is about -50 dBFS).
const SPEECH_FLOOR_RMS: f64 = 100.0;

/// One WAV of the corpus, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// File stem ("balance" for balance.wav).
    pub name: String,
    pub path: PathBuf,
    /// Mono samples at `sample_rate`.
    pub samples: Vec<i16>,
    /// Hz.
    pub sample_rate: u32,
    /// Reference text, trimmed; None when there is none or it is empty.
    pub transcript: Option<String>,
    /// Offset from the start of the clip where the last speech frame ends, ms; None for silence.
    pub speech_end_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wav(#[from] SendError),
    #[error("{0} has no .wav files")]
    NoWavs(PathBuf),
    #[error(
        "{dir} has several .tsv files and no transcripts.tsv; keep one or name it transcripts.tsv"
    )]
    SeveralTsv { dir: PathBuf },
    #[error("{path} line {line}: expected `<file name or stem><TAB><transcript>`")]
    TsvLine { path: PathBuf, line: usize },
    #[error("{path} line {line}: {key} already has a transcript on line {first}")]
    TsvDuplicate {
        path: PathBuf,
        line: usize,
        key: String,
        first: usize,
    },
}

/// Load a WAV file or every `*.wav` directly in a folder, sorted by file name.
pub fn load(path: &Path) -> Result<Vec<Clip>, CorpusError> {
    let io = |source| CorpusError::Io {
        path: path.to_owned(),
        source,
    };
    let (dir, wavs) = if path.metadata().map_err(io)?.is_dir() {
        (path.to_owned(), list_wavs(path)?)
    } else {
        let dir = path.parent().unwrap_or(Path::new("")).to_owned();
        (dir, vec![path.to_owned()])
    };
    let tsv = folder_transcripts(&dir)?;
    wavs.into_iter().map(|wav| load_clip(wav, &tsv)).collect()
}

/// Where the last 20 ms frame louder than the speech threshold ends, ms from the start.
///
/// Threshold: 35 dB below the loudest frame's RMS, and never under about -50 dBFS, so
/// a clip of digital silence or faint hiss has no speech (None). A short last frame counts.
pub fn speech_end_ms(samples: &[i16], sample_rate: u32) -> Option<u64> {
    if sample_rate == 0 {
        return None;
    }
    let frame = (sample_rate as u64 * FRAME_MS / 1000).max(1) as usize;
    let rms: Vec<f64> = samples
        .chunks(frame)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect();
    let peak = rms.iter().copied().fold(0.0, f64::max);
    let threshold = (peak * 10f64.powf(-SPEECH_BELOW_PEAK_DB / 20.0)).max(SPEECH_FLOOR_RMS);
    let last = rms.iter().rposition(|&r| r > threshold)?;
    let end_sample = ((last + 1) * frame).min(samples.len()) as u64;
    Some(end_sample * 1000 / sample_rate as u64)
}

fn list_wavs(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let mut wavs = Vec::new();
    for entry in read_dir(dir)? {
        let path = entry.path();
        if has_extension(&path, "wav") && path.is_file() {
            wavs.push(path);
        }
    }
    if wavs.is_empty() {
        return Err(CorpusError::NoWavs(dir.to_owned()));
    }
    wavs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(wavs)
}

fn load_clip(path: PathBuf, tsv: &HashMap<String, String>) -> Result<Clip, CorpusError> {
    let (samples, sample_rate) = read_wav(&path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let transcript = match read_optional(&path.with_extension("txt"))? {
        Some(text) => non_empty(&text),
        None => tsv.get(&file_name).or_else(|| tsv.get(&name)).cloned(),
    };
    Ok(Clip {
        speech_end_ms: speech_end_ms(&samples, sample_rate),
        name,
        path,
        samples,
        sample_rate,
        transcript,
    })
}

/// Key (file name or stem, as written) -> non-empty transcript, from the folder's TSV if any.
fn folder_transcripts(dir: &Path) -> Result<HashMap<String, String>, CorpusError> {
    let listed = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut tsvs = Vec::new();
    for entry in read_dir(listed)? {
        let path = entry.path();
        if has_extension(&path, "tsv") && path.is_file() {
            tsvs.push(path);
        }
    }
    let chosen = match tsvs
        .iter()
        .find(|p| p.file_name() == Some("transcripts.tsv".as_ref()))
    {
        Some(named) => named.clone(),
        None if tsvs.len() > 1 => {
            return Err(CorpusError::SeveralTsv {
                dir: dir.to_owned(),
            })
        }
        None => match tsvs.pop() {
            Some(only) => only,
            None => return Ok(HashMap::new()),
        },
    };
    let text = read_optional(&chosen)?.unwrap_or_default();
    parse_tsv(&chosen, &text)
}

fn parse_tsv(path: &Path, text: &str) -> Result<HashMap<String, String>, CorpusError> {
    let mut out = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let malformed = || CorpusError::TsvLine {
            path: path.to_owned(),
            line: line_no,
        };
        let (key, transcript) = line.split_once('\t').ok_or_else(malformed)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(malformed());
        }
        if let Some(&first) = first_line.get(key) {
            return Err(CorpusError::TsvDuplicate {
                path: path.to_owned(),
                line: line_no,
                key: key.to_owned(),
                first,
            });
        }
        first_line.insert(key.to_owned(), line_no);
        if let Some(transcript) = non_empty(transcript) {
            out.insert(key.to_owned(), transcript);
        }
    }
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, CorpusError> {
    let io = |source| CorpusError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)
}

/// File contents, or None when the file does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CorpusError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CorpusError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn non_empty(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
