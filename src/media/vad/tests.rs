//! Unit tests for `media::vad`.
use super::*;

const RATE: u32 = 16_000;
/// Samples per 20 ms frame at 16 kHz.
const FL: usize = 320;

/// Voice-like test signal: 140 Hz with 12 harmonics (1/h), 4 Hz amplitude
/// modulation, peak about -8 dBFS. webrtc-vad calls every frame of it speech at
/// all modes (a pure sine is not a safe bet). `t0` keeps the phase continuous.
fn voice(n: usize, t0: usize) -> Vec<i16> {
    use std::f64::consts::TAU;
    (t0..t0 + n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let v: f64 = (1..=12)
                .map(|h| (TAU * 140.0 * f64::from(h) * t).sin() / f64::from(h))
                .sum();
            let am = 0.6 + 0.4 * (TAU * 4.0 * t).sin();
            (v * am * 6000.0) as i16
        })
        .collect()
}

/// Concatenate (is_voice, ms) pieces.
fn script(parts: &[(bool, u32)]) -> Vec<i16> {
    let mut out = Vec::new();
    for &(is_voice, ms) in parts {
        let n = (RATE / 1000 * ms) as usize;
        if is_voice {
            let t0 = out.len();
            out.extend(voice(n, t0));
        } else {
            out.extend(std::iter::repeat_n(0, n));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Utterance {
    start: u64,
    end: u64,
    reason: Option<EndReason>,
    /// Audio forwarded: held audio at start, then every in-speech frame.
    audio: Vec<i16>,
    /// Frame index at which `Started` came.
    started_at_frame: usize,
}

/// Feed `signal` frame by frame (last partial frame zero-padded), then `finish`.
fn run(seg: &mut Segmenter, signal: &[i16]) -> Vec<Utterance> {
    let fl = seg.frame_len();
    let mut done = Vec::new();
    let mut open: Option<Utterance> = None;
    for (i, chunk) in signal.chunks(fl).enumerate() {
        let mut frame = chunk.to_vec();
        frame.resize(fl, 0);
        match seg.push_frame(&frame).unwrap() {
            FrameVerdict::Idle | FrameVerdict::Pending => assert!(open.is_none()),
            FrameVerdict::Started { start_sample } => {
                assert!(open.is_none(), "start inside an utterance");
                let mut u = Utterance {
                    start: start_sample,
                    started_at_frame: i,
                    ..Default::default()
                };
                seg.drain_held(&mut u.audio);
                open = Some(u);
            }
            FrameVerdict::InSpeech => open.as_mut().unwrap().audio.extend(&frame),
            FrameVerdict::Ended { end_sample, reason } => {
                let mut u = open.take().expect("end without start");
                u.audio.extend(&frame);
                u.end = end_sample;
                u.reason = Some(reason);
                done.push(u);
            }
        }
        assert_eq!(seg.in_speech(), open.is_some());
    }
    if let Some(end) = seg.finish() {
        let mut u = open.take().expect("finish ended an utterance we never saw");
        u.end = end;
        done.push(u);
    }
    assert!(open.is_none(), "finish left an utterance open");
    done
}

/// webrtc-vad's own verdicts for the same frames: (first voiced, last voiced) frame.
fn reference_edges(cfg: VadConfig, signal: &[i16]) -> (usize, usize) {
    let mut vad = WebRtcVad::new(cfg.aggressiveness, RATE, cfg.frame_ms).unwrap();
    let voiced: Vec<usize> = signal
        .chunks_exact(FL)
        .enumerate()
        .filter(|(_, f)| vad.is_speech(f).unwrap())
        .map(|(i, _)| i)
        .collect();
    (voiced[0], *voiced.last().unwrap())
}

fn seg(cfg: VadConfig) -> Segmenter {
    Segmenter::new(cfg, RATE).unwrap()
}

#[test]
fn rejects_bad_parameters() {
    let cfg = VadConfig::default();
    for rate in [8000, 16000, 32000, 48000] {
        let s = Segmenter::new(cfg, rate).unwrap();
        assert_eq!(s.frame_len(), (rate / 50) as usize);
    }
    assert!(matches!(
        Segmenter::new(cfg, 44_100),
        Err(VadError::UnsupportedRate(44_100))
    ));
    let bad_frame = VadConfig {
        frame_ms: 25,
        ..cfg
    };
    assert!(matches!(
        Segmenter::new(bad_frame, RATE),
        Err(VadError::UnsupportedFrame(25))
    ));
    let bad_mode = VadConfig {
        aggressiveness: 4,
        ..cfg
    };
    assert!(matches!(
        Segmenter::new(bad_mode, RATE),
        Err(VadError::UnsupportedAggressiveness(4))
    ));
    let mut s = seg(cfg);
    for len in [0, 160, 319, 480] {
        assert!(matches!(
            s.push_frame(&vec![0; len]),
            Err(VadError::FrameLength { got, expected: 320 }) if got == len
        ));
    }
    assert_eq!(s.position(), 0, "a rejected frame does not move the clock");
}

#[test]
fn segmenter_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Segmenter>();
    assert_send::<WebRtcVad>();
}

#[test]
fn one_burst_positions_preroll_and_hangover() {
    let cfg = VadConfig::default();
    let signal = script(&[(false, 1000), (true, 1000), (false, 2000)]);
    let (first, last) = reference_edges(cfg, &signal);
    assert_eq!(first, 50, "voice starts at frame 50 (1 s)");

    let utts = run(&mut seg(cfg), &signal);
    assert_eq!(utts.len(), 1);
    let u = &utts[0];
    // Pre-roll: 300 ms = 4800 samples before the first voiced frame.
    assert_eq!(u.start, 50 * 320 - 4800);
    // Confirmed on the 8th voiced frame (5 for 100 ms + 3 overhang at mode 2).
    assert_eq!(u.started_at_frame, first + 7);
    // Hangover: 600 ms = 30 frames after the voice itself ends (frame 100), not
    // after webrtc-vad's last "speech" frame: its hold frames count as silence.
    // The detector still calls the first silent frame speech (its filters' tail), then
    // holds 5 frames at mode 2 after a long run.
    assert_eq!(last, 100 + 5);
    assert_eq!(u.end, ((last + 1 - 5 + 30) * FL) as u64);
    assert_eq!(u.reason, Some(EndReason::Silence));
    // What was forwarded is exactly the input between start and end, in order.
    assert_eq!(u.audio, signal[u.start as usize..u.end as usize]);
}

#[test]
fn preroll_is_limited_to_what_exists() {
    // Voice 100 ms into the stream: only 5 frames of pre-roll exist.
    let signal = script(&[(false, 100), (true, 500), (false, 1000)]);
    let utts = run(&mut seg(VadConfig::default()), &signal);
    assert_eq!(utts.len(), 1);
    assert_eq!(utts[0].start, 0);
    assert_eq!(utts[0].audio, signal[..utts[0].end as usize]);

    // No pre-roll configured: starts at the first voiced frame.
    let cfg = VadConfig {
        preroll_ms: 0,
        ..Default::default()
    };
    let signal = script(&[(false, 1000), (true, 500), (false, 1000)]);
    let utts = run(&mut seg(cfg), &signal);
    assert_eq!(utts.len(), 1);
    assert_eq!(utts[0].start, 50 * 320);
    assert_eq!(utts[0].audio.len() as u64, utts[0].end - utts[0].start);
}

#[test]
fn short_click_and_burst_are_not_speech() {
    let cfg = VadConfig::default();
    // 2 ms full-scale click, then 20 ms and 40 ms bursts, each in silence.
    let mut signal = script(&[(false, 1000)]);
    signal[8000..8032]
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| *s = if i % 2 == 0 { 30_000 } else { -30_000 });
    signal.extend(script(&[
        (true, 20),
        (false, 1000),
        (true, 40),
        (false, 1000),
    ]));
    let mut s = seg(cfg);
    let mut verdicts = Vec::new();
    for f in signal.chunks_exact(FL) {
        verdicts.push(s.push_frame(f).unwrap());
    }
    assert!(verdicts.contains(&FrameVerdict::Pending), "VAD saw them");
    assert!(verdicts
        .iter()
        .all(|v| matches!(v, FrameVerdict::Idle | FrameVerdict::Pending)));
    assert_eq!(s.finish(), None);

    // 200 ms of voice is speech.
    let signal = script(&[(false, 500), (true, 200), (false, 1000)]);
    assert_eq!(run(&mut seg(cfg), &signal).len(), 1);
}

#[test]
fn failed_pending_frames_stay_as_preroll() {
    // A 40 ms burst 200 ms before real voice: rejected, yet its frames are
    // pre-roll of the utterance that follows, contiguous with it.
    let signal = script(&[
        (false, 1000),
        (true, 40),
        (false, 200),
        (true, 600),
        (false, 1500),
    ]);
    let utts = run(&mut seg(VadConfig::default()), &signal);
    assert_eq!(utts.len(), 1);
    let voice_at = (1240 * 16) as u64;
    assert_eq!(utts[0].start, voice_at - 4800);
    assert_eq!(
        utts[0].audio,
        signal[utts[0].start as usize..utts[0].end as usize]
    );
}

#[test]
fn pause_shorter_than_hangover_keeps_one_utterance() {
    let cfg = VadConfig::default();
    let short = script(&[
        (false, 500),
        (true, 500),
        (false, 300),
        (true, 500),
        (false, 2000),
    ]);
    assert_eq!(run(&mut seg(cfg), &short).len(), 1);
    let long = script(&[
        (false, 500),
        (true, 500),
        (false, 1000),
        (true, 500),
        (false, 2000),
    ]);
    let utts = run(&mut seg(cfg), &long);
    assert_eq!(utts.len(), 2);
    assert!(utts[0].end <= utts[1].start, "utterances never overlap");
    assert!(utts.iter().all(|u| u.reason == Some(EndReason::Silence)));
}

#[test]
fn max_length_splits_and_continues() {
    let cfg = VadConfig {
        max_utterance_ms: 1500,
        ..Default::default()
    };
    // Voice 1.0 s to 2.8 s. Utterance one: 0.7 s (pre-roll) to 2.2 s; two: 2.2 s
    // to about 3.5 s (voice end, webrtc-vad overhang, hangover).
    let signal = script(&[(false, 1000), (true, 1800), (false, 2000)]);
    let utts = run(&mut seg(cfg), &signal);
    assert_eq!(utts.len(), 2, "{utts:?}");
    let (a, b) = (&utts[0], &utts[1]);
    assert_eq!(a.start, 700 * 16);
    assert_eq!(a.reason, Some(EndReason::MaxLength));
    assert_eq!(a.end - a.start, 1500 * 16, "exactly max_utterance_ms");
    // The next one starts right where the previous stopped: no pre-roll reuse
    // (already forwarded) and no gap.
    assert_eq!(b.start, a.end);
    assert_eq!(b.reason, Some(EndReason::Silence));
    let mut all: Vec<i16> = a.audio.clone();
    all.extend(&b.audio);
    assert_eq!(all, signal[a.start as usize..b.end as usize]);
}

#[test]
fn skip_counts_as_silence() {
    let cfg = VadConfig::default();
    let voice_1s = script(&[(true, 1000)]);
    let mut s = seg(cfg);
    let mut started = None;
    for f in voice_1s.chunks_exact(FL) {
        if let FrameVerdict::Started { start_sample } = s.push_frame(f).unwrap() {
            started = Some(start_sample);
        }
    }
    assert_eq!(started, Some(0));
    // A 200 ms pause does not end it; a further 1 s does, once the hangover
    // (600 ms of silence in all) has passed: 400 ms into the second gap.
    assert_eq!(s.skip(3200), None);
    assert!(s.in_speech());
    assert_eq!(
        s.skip(16_000),
        Some(FrameVerdict::Ended {
            end_sample: 16_000 + 9600,
            reason: EndReason::Silence
        })
    );
    assert!(!s.in_speech());
    assert_eq!(s.position(), 16_000 + 3200 + 16_000);
    assert_eq!(s.skip(0), None);
}

#[test]
fn skip_clears_preroll_and_pending() {
    let cfg = VadConfig::default();
    let mut s = seg(cfg);
    // 1 s of silence fills the pre-roll, then the sender pauses 1 s.
    for f in script(&[(false, 1000)]).chunks_exact(FL) {
        assert_eq!(s.push_frame(f).unwrap(), FrameVerdict::Idle);
    }
    assert_eq!(s.skip(16_000), None);
    let mut held = Vec::new();
    s.drain_held(&mut held);
    assert!(held.is_empty(), "pre-roll is only handed out after Started");
    // Voice right after the gap: no pre-roll from before it.
    let voice = voice(16_000, 0);
    let mut start = None;
    for f in voice.chunks_exact(FL) {
        if let FrameVerdict::Started { start_sample } = s.push_frame(f).unwrap() {
            start = Some(start_sample);
            s.drain_held(&mut held);
        }
    }
    assert_eq!(start, Some(32_000));
    assert_eq!(held, voice[..held.len()]);
    assert_eq!(s.finish(), Some(48_000));

    // A gap during Pending abandons it.
    let mut s = seg(cfg);
    for f in voice[..3 * FL].chunks_exact(FL) {
        assert_eq!(s.push_frame(f).unwrap(), FrameVerdict::Pending);
    }
    assert_eq!(s.skip(160), None);
    assert!(!s.in_speech());
    let mut verdicts = Vec::new();
    for f in voice[..7 * FL].chunks_exact(FL) {
        verdicts.push(s.push_frame(f).unwrap());
    }
    assert!(verdicts.iter().all(|v| *v == FrameVerdict::Pending));
    match s.push_frame(&voice[7 * FL..8 * FL]).unwrap() {
        // Counted afresh from after the gap: 3 frames + 160 + 7 frames.
        FrameVerdict::Started { start_sample } => assert_eq!(start_sample, 3 * 320 + 160),
        other => panic!("{other:?}"),
    }
}

#[test]
fn finish_ends_open_utterance_only() {
    let mut s = seg(VadConfig::default());
    assert_eq!(s.finish(), None);
    let signal = script(&[(false, 500), (true, 500)]);
    let utts = run(&mut s, &signal);
    assert_eq!(utts.len(), 1);
    assert_eq!(utts[0].end, signal.len() as u64);
    assert_eq!(utts[0].reason, None, "ended by finish");
    assert!(!s.in_speech());
    assert_eq!(s.finish(), None);
    // Still usable afterwards, clock kept.
    let more = script(&[(true, 500), (false, 1500)]);
    let again = run(&mut s, &more);
    assert_eq!(again.len(), 1);
    assert!(again[0].start >= signal.len() as u64);
}

fn fixture(name: &str) -> Vec<i16> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16)
    );
    reader.into_samples::<i16>().map(Result::unwrap).collect()
}

#[test]
fn two_phrase_fixture_gives_two_utterances_split_in_the_pause() {
    // Layout (see tests/fixtures/README.md): 0.5 s silence, phrase one up to
    // about 1.93 s, 1.5 s of silence, phrase two, 1.2 s silence.
    let audio = fixture("two-phrases.wav");
    let speech: Vec<usize> = (0..audio.len()).filter(|&i| audio[i].abs() > 30).collect();
    let (one_end, two_start) = speech
        .windows(2)
        .find(|w| w[1] - w[0] > 16_000)
        .map(|w| (w[0] as u64, w[1] as u64))
        .unwrap();
    let utts = run(&mut seg(VadConfig::default()), &audio);
    assert_eq!(utts.len(), 2, "{utts:?}");
    assert!(utts[0].start < speech[0] as u64);
    assert!(one_end < utts[0].end && utts[0].end < two_start, "{utts:?}");
    assert_eq!(utts[0].reason, Some(EndReason::Silence));
    assert!(
        one_end < utts[1].start && utts[1].start < two_start,
        "{utts:?}"
    );
    assert!(utts[1].end > *speech.last().unwrap() as u64);
}

#[test]
fn single_phrase_fixtures_give_one_utterance_each() {
    for name in ["yes-interested.wav", "call-back.wav", "balance.wav"] {
        let audio = fixture(name);
        let utts = run(&mut seg(VadConfig::default()), &audio);
        assert_eq!(utts.len(), 1, "{name}: {utts:?}");
        // The utterance holds all the speech and at least 500 ms after it.
        let last_loud = audio.iter().rposition(|s| s.unsigned_abs() > 1000).unwrap();
        assert!(
            utts[0].start < 8000 && utts[0].end >= last_loud as u64 + 16 * 500,
            "{name}"
        );
    }
}

#[test]
fn huge_millisecond_settings_are_refused_before_allocating() {
    let huge = VadConfig {
        preroll_ms: u32::MAX,
        ..VadConfig::default()
    };
    assert!(matches!(
        Segmenter::new(huge, RATE),
        Err(VadError::OutOfRange {
            setting: "preroll_ms",
            ..
        })
    ));
    let huge = VadConfig {
        min_speech_ms: u32::MAX,
        ..VadConfig::default()
    };
    assert!(matches!(
        Segmenter::new(huge, RATE),
        Err(VadError::OutOfRange {
            setting: "min_speech_ms",
            ..
        })
    ));
    let at_limit = VadConfig {
        preroll_ms: MAX_PREROLL_MS,
        hangover_ms: MAX_HANGOVER_MS,
        ..VadConfig::default()
    };
    assert!(Segmenter::new(at_limit, RATE).is_ok());
}

#[test]
fn hangover_counts_from_the_end_of_the_voice_at_every_mode() {
    for aggressiveness in 0..=3 {
        let cfg = VadConfig {
            aggressiveness,
            ..Default::default()
        };
        let signal = script(&[(false, 1000), (true, 1000), (false, 2000)]);
        let (_, last) = reference_edges(cfg, &signal);
        let hold = webrtc_long_overhang_frames(aggressiveness, 20) as usize;
        // Voice ends with frame 99; the detector hears its tail in frame 100, then holds.
        assert_eq!(last, 100 + hold, "mode {aggressiveness}: detector's hold");
        let utts = run(&mut seg(cfg), &signal);
        assert_eq!(utts.len(), 1);
        // The hangover runs from frame 101, not from the end of the hold.
        let end = (101 + 30) * FL;
        assert_eq!(utts[0].end, end as u64, "mode {aggressiveness}");
    }
}

#[test]
fn hold_after_a_short_run_is_the_short_one() {
    // Output runs too short to contain a long run plus its long hold.
    assert_eq!(webrtc_hold_frames(4, 3, 5), 3);
    assert_eq!(webrtc_hold_frames(11, 3, 5), 3);
    assert_eq!(webrtc_hold_frames(12, 3, 5), 5);
    // Never the whole run: its first frame was voice.
    assert_eq!(webrtc_hold_frames(2, 3, 5), 1);
    assert_eq!(webrtc_hold_frames(0, 3, 5), 0);
}

#[test]
fn input_that_stops_counts_the_quiet_hold_as_silence() {
    let cfg = VadConfig::default();
    // Voice, then 100 ms of silence (which webrtc-vad holds as speech), then nothing.
    let signal = script(&[(false, 500), (true, 1000), (false, 100)]);
    let mut s = seg(cfg);
    for f in signal.chunks_exact(FL) {
        s.push_frame(f).unwrap();
    }
    assert!(s.in_speech());
    // Of the 600 ms hangover, the 100 ms already silent are spent.
    assert_eq!(s.silence_to_end(), Some((30 - 5) * FL as u64));
    // Voice right up to the stop: nothing is spent.
    let mut s = seg(cfg);
    for f in script(&[(false, 500), (true, 1000)]).chunks_exact(FL) {
        s.push_frame(f).unwrap();
    }
    assert_eq!(s.silence_to_end(), Some(30 * FL as u64));
}
