//! The bench's offline column: the same engine on the same clips, whole, through the
//! telephone path the bench codec implies, so the gateway's WER has a baseline to divide by.

use std::time::Duration;

use serde::Serialize;

use super::corpus::Clip;
use crate::asr::client::{AsrClient, ClientConfig};
use crate::tls::TlsSettings;
use crate::transcribe::{self, TelephonePath};

/// The engine rate the bench's gateway sends (its default `asr.sample_rate`).
const ENGINE_RATE: u32 = 16_000;

/// Gateway WER next to the offline WER of the same engine on the same audio.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Baseline {
    /// WER of whole-file recognition, pooled over the clips with a reference.
    pub offline_wer: Option<f64>,
    pub offline_reference_words: usize,
    /// `ulaw`, `alaw`, `linear` (8 kHz) or `none`.
    pub telephone_path: &'static str,
    /// Gateway WER / offline WER. None when the offline WER is 0 and the gateway's is not.
    pub wer_ratio: Option<f64>,
    /// Clips the engine failed on offline (their words count as deleted).
    pub offline_failures: usize,
}

/// Recognize every clip whole with the engine at `endpoint`. `wer_ratio` waits for
/// `set_gateway_wer`.
pub async fn baseline(
    endpoint: &str,
    clips: &[Clip],
    codec: &str,
    language: &str,
) -> Result<Baseline, String> {
    let client = AsrClient::new(ClientConfig {
        endpoint: endpoint.to_owned(),
        tls: TlsSettings::default(),
        connect_timeout: Duration::from_secs(5),
        final_timeout: Duration::from_secs(60),
    })
    .map_err(|e| e.to_string())?;
    let path = TelephonePath::for_codec(codec);
    let results = transcribe::transcribe_clips(&client, clips, path, ENGINE_RATE, language)
        .await
        .map_err(|e| e.to_string())?;
    let pooled = transcribe::pooled_wer(&results).unwrap_or_default();
    let offline_wer = pooled.wer();
    Ok(Baseline {
        offline_wer,
        offline_reference_words: pooled.reference_words,
        telephone_path: path.map_or("none", TelephonePath::name),
        wer_ratio: None,
        offline_failures: results.iter().filter(|r| r.failure.is_some()).count(),
    })
}

impl Baseline {
    pub fn set_gateway_wer(&mut self, gateway_wer: Option<f64>) {
        self.wer_ratio = ratio(gateway_wer, self.offline_wer);
    }
}

/// gateway / offline; equal WERs (both 0 included) give 1.
fn ratio(gateway: Option<f64>, offline: Option<f64>) -> Option<f64> {
    let (g, o) = (gateway?, offline?);
    if o > 0.0 {
        Some(g / o)
    } else if g == 0.0 {
        Some(1.0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn ratio_of_wers() {
        assert_eq!(ratio(Some(0.10), Some(0.05)), Some(2.0));
        assert_eq!(ratio(Some(0.0), Some(0.0)), Some(1.0));
        assert_eq!(ratio(Some(0.1), Some(0.0)), None);
        assert_eq!(ratio(None, Some(0.1)), None);
    }
}
