//! Session state machine tests: real fixture speech packetized as Asterisk sends it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::asr::types::{AsrFailure, Hypothesis};
use crate::sender::{self, SendOptions};

const PTIME: Duration = Duration::from_millis(20);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn config(mode: AsrMode) -> SessionConfig {
    SessionConfig {
        mode,
        interim_results: true,
        ..SessionConfig::default()
    }
}

fn packets(file: &str, options: &SendOptions) -> Vec<Vec<u8>> {
    let (samples, rate) = sender::read_wav(&fixture(file)).expect("fixture readable");
    sender::packetize(&samples, rate, options, 0x1234_5678, 65_500).expect("packetize")
}

/// Feed packets 20 ms apart; returns every output drained along the way and the last `now`.
fn feed(session: &mut Session, start: Instant, packets: &[Vec<u8>]) -> (Vec<Output>, Instant) {
    let mut outputs = Vec::new();
    let mut now = start;
    for p in packets {
        session.handle_rtp(now, p).expect("valid packet");
        drain(session, &mut outputs);
        now += PTIME;
    }
    (outputs, now)
}

fn drain(session: &mut Session, into: &mut Vec<Output>) {
    loop {
        match session.poll_output() {
            Output::Timeout(_) => return,
            other => into.push(other),
        }
    }
}

fn events(outputs: &[Output]) -> Vec<&EventBody> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(&e.body),
            _ => None,
        })
        .collect()
}

fn controls(outputs: &[Output]) -> Vec<&AsrControl> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::AsrControl(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn audio_samples(outputs: &[Output], stream: UtteranceId) -> usize {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::AsrAudio(a) if a.stream == stream => Some(a.samples.len()),
            _ => None,
        })
        .sum()
}

/// `start_ms` of the first `asr.speech.started` among `outputs`.
fn first_speech_start_ms(outputs: &[Output]) -> u64 {
    events(outputs)
        .into_iter()
        .find_map(|e| match e {
            EventBody::SpeechStarted { start_ms, .. } => Some(*start_ms),
            _ => None,
        })
        .expect("an utterance started")
}

/// `end_ms` of the first `asr.speech.ended` among `outputs`.
fn first_speech_end_ms(outputs: &[Output]) -> u64 {
    events(outputs)
        .into_iter()
        .find_map(|e| match e {
            EventBody::SpeechEnded { end_ms, .. } => Some(*end_ms),
            _ => None,
        })
        .expect("an utterance ended")
}

fn final_for(utterance: UtteranceId, text: &str) -> AsrUpdate {
    AsrUpdate::Result(Hypothesis {
        stream: utterance,
        utterance,
        is_final: true,
        text: text.into(),
        confidence: 0.9,
        words: vec![],
        start_ms: 0,
        end_ms: 0,
    })
}

#[test]
fn two_phrases_become_two_utterances_with_preroll() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (out, _) = feed(
        &mut s,
        t0,
        &packets("two-phrases.wav", &SendOptions::pcmu()),
    );
    let evs = events(&out);
    assert!(matches!(
        evs[0],
        EventBody::SessionStarted {
            transport: "rtp",
            ..
        }
    ));
    let starts: Vec<_> = evs
        .iter()
        .filter(|e| matches!(e, EventBody::SpeechStarted { .. }))
        .collect();
    let ends: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            EventBody::SpeechEnded {
                utterance,
                start_ms,
                end_ms,
                cause,
            } => Some((*utterance, *start_ms, *end_ms, *cause)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "events: {evs:?}");
    assert_eq!(ends.len(), 2, "events: {evs:?}");
    assert!(ends.iter().all(|e| e.3 == SpeechEndCause::Silence));
    assert!(ends[0].2 <= ends[1].1, "utterances overlap: {ends:?}");
    let ctl = controls(&out);
    assert_eq!(
        ctl[0],
        &AsrControl::Begin {
            stream: 1,
            offset_ms: ends[0].1
        }
    );
    assert!(ctl.contains(&&AsrControl::End { stream: 1 }));
    assert!(ctl.contains(&&AsrControl::End { stream: 2 }));
    // Every sample of an utterance reaches the engine, pre-roll included.
    for (id, start_ms, end_ms, _) in &ends {
        let expected = (end_ms - start_ms) as usize * 16;
        let got = audio_samples(&out, *id);
        assert!(
            got.abs_diff(expected) <= 320,
            "utterance {id}: {got} samples for {start_ms}..{end_ms} ms"
        );
    }
    // The first utterance starts with pre-roll before the speech onset, not at 0.
    assert!(ends[0].1 > 0);
}

#[test]
fn audio_chunks_follow_the_configured_size() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (out, _) = feed(
        &mut s,
        t0,
        &packets("yes-interested.wav", &SendOptions::pcmu()),
    );
    let sizes: Vec<usize> = out
        .iter()
        .filter_map(|o| match o {
            Output::AsrAudio(a) => Some(a.samples.len()),
            _ => None,
        })
        .collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    // 100 ms at 16 kHz, except the last chunk of the utterance.
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 1600),
        "{sizes:?}"
    );
}

#[test]
fn finals_become_events_then_close_ends_session() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (_, now) = feed(
        &mut s,
        t0,
        &packets("yes-interested.wav", &SendOptions::pcmu()),
    );
    s.handle_asr(
        now + Duration::from_millis(700),
        final_for(1, "yes I am interested"),
    );
    s.handle_asr(
        now + Duration::from_millis(700),
        AsrUpdate::Closed { stream: 1 },
    );
    s.handle_close(now + Duration::from_secs(1), EndCause::Stopped);
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    let evs = events(&out);
    match evs[0] {
        EventBody::TranscriptFinal {
            utterance: 1,
            text,
            latency_ms: Some(latency),
            ..
        } => {
            assert_eq!(text, "yes I am interested");
            assert!(*latency >= 700, "latency counts from speech end: {latency}");
        }
        other => panic!("expected a final, got {other:?}"),
    }
    match evs.last().unwrap() {
        EventBody::SessionEnded {
            cause: EndCause::Stopped,
            codec,
            payload_type,
            utterances,
            stats,
            duration_ms,
        } => {
            assert_eq!(codec.as_deref(), Some("pcmu"));
            assert_eq!(*payload_type, Some(0));
            assert_eq!(*utterances, 1);
            assert!(stats.received > 50);
            assert_eq!(stats.lost, 0);
            assert!(*duration_ms > 1000);
        }
        other => panic!("expected session end, got {other:?}"),
    }
    assert!(s.is_closed());
}

#[test]
fn close_mid_utterance_ends_speech_and_waits_for_final() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("call-back.wav", &SendOptions::pcmu());
    // Stop in the middle of the phrase.
    let (_, now) = feed(&mut s, t0, &all[..all.len() / 2]);
    s.handle_close(now, EndCause::Stopped);
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        EventBody::SpeechEnded {
            cause: SpeechEndCause::SessionEnd,
            ..
        }
    )));
    assert!(controls(&out).contains(&&AsrControl::End { stream: 1 }));
    assert!(!s.is_closed(), "waits for the engine");
    // The engine never answers: the deadline ends the session with an error.
    s.handle_timeout(now + Duration::from_secs(6));
    out.clear();
    drain(&mut s, &mut out);
    let evs = events(&out);
    assert!(
        matches!(
            evs[0],
            EventBody::Error {
                code: "asr_timeout",
                utterance: Some(1),
                ..
            }
        ),
        "{evs:?}"
    );
    assert!(matches!(evs[1], EventBody::SessionEnded { .. }));
    assert!(s.is_closed());
}

#[test]
fn call_mode_streams_the_whole_call_with_markers() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Call), t0).unwrap();
    let all = packets("two-phrases.wav", &SendOptions::pcmu());
    let (mut out, now) = feed(&mut s, t0, &all);
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut out);
    let ctl = controls(&out);
    assert_eq!(
        ctl[0],
        &AsrControl::Begin {
            stream: 0,
            offset_ms: 0
        }
    );
    let markers = ctl
        .iter()
        .filter(|c| matches!(c, AsrControl::EndOfSpeech { .. }))
        .count();
    assert_eq!(markers, 2, "{ctl:?}");
    assert_eq!(ctl.last().unwrap(), &&AsrControl::End { stream: 0 });
    // Every 20 ms of the call went to the engine, at 16 kHz.
    let sent = audio_samples(&out, 0);
    assert!(
        sent.abs_diff(all.len() * 320) <= 320,
        "{sent} samples for {} packets",
        all.len()
    );
    s.handle_asr(now, final_for(1, "i would like to pay my bill"));
    s.handle_asr(now, AsrUpdate::Closed { stream: 0 });
    out.clear();
    drain(&mut s, &mut out);
    assert!(matches!(
        events(&out)[0],
        EventBody::TranscriptFinal { utterance: 1, .. }
    ));
    assert!(s.is_closed());
}

#[test]
fn lost_packets_are_concealed_and_counted() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("balance.wav", &SendOptions::pcmu());
    let mut now = t0;
    let mut out = Vec::new();
    for (i, p) in all.iter().enumerate() {
        if (20..25).contains(&i) {
            now += PTIME;
            continue;
        }
        s.handle_rtp(now, p).unwrap();
        s.handle_timeout(now);
        drain(&mut s, &mut out);
        now += PTIME;
    }
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut out);
    let stats = s.stats();
    assert_eq!(stats.lost, 5);
    assert_eq!(stats.received as usize, all.len() - 5);
    // Media time stays aligned: concealment filled the gap.
    let ended = events(&out)
        .into_iter()
        .find_map(|e| match e {
            EventBody::SpeechEnded { end_ms, .. } => Some(*end_ms),
            _ => None,
        })
        .unwrap_or(0);
    assert!(ended <= all.len() as u64 * 20);
    assert!(
        s.ms(s.media_samples).abs_diff(all.len() as u64 * 20) <= 20,
        "media {} ms",
        s.ms(s.media_samples)
    );
}

/// Found by the `session` fuzz target: a timestamp jump backwards, then a lost packet, made
/// the loss look hours long, and the session concealed (decoded, resampled, VAD'd and
/// streamed) all of it. Concealment is capped; the rest of the gap passes as a pause.
#[test]
fn a_loss_spanning_a_timestamp_jump_conceals_at_most_a_second() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Call), t0).unwrap();
    let packet = |sequence: u16, timestamp: u32| {
        let mut p = Vec::new();
        let header = rtp::RtpHeader {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp,
            ssrc: 7,
        };
        header.write_to(&mut p);
        p.extend([0xFF; 160]);
        p
    };
    // 10 s at 8 kHz: sequence 9 jumps back by it, 10 is lost, 11 is back on the old clock.
    let jump = 80_000u32;
    let mut sent: Vec<Vec<u8>> = (1..=8u16).map(|i| packet(i, 160 * u32::from(i))).collect();
    sent.push(packet(9, (160 * 9u32).wrapping_sub(jump)));
    sent.push(packet(11, 160 * 11));
    let (mut out, now) = feed(&mut s, t0, &sent);
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut out);

    assert_eq!(s.stats().lost, 1);
    let streamed_ms = audio_samples(&out, CALL_STREAM) as u64 * 1000 / 16_000;
    // Ten packets, at most a second concealed, and the resampler's tail (under 20 ms)
    // flushed at close.
    assert!(
        streamed_ms <= 10 * 20 + 1000 + 20,
        "{streamed_ms} ms of audio streamed"
    );
    // Media time still counts the whole gap the timestamps claim.
    assert!(
        s.ms(s.media_samples) >= 10_000,
        "media {} ms",
        s.ms(s.media_samples)
    );
}

#[test]
fn malformed_and_unknown_payloads_are_counted_and_survived() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    assert!(matches!(
        s.handle_rtp(t0, &[0x80, 0x00, 0x01]),
        Err(InputError::Rtp(_))
    ));
    assert!(matches!(
        s.handle_rtp(t0, &[0x40; 20]),
        Err(InputError::Rtp(_))
    ));
    let mut unknown = Vec::new();
    crate::media::rtp::RtpHeader {
        marker: false,
        payload_type: 99,
        sequence: 1,
        timestamp: 160,
        ssrc: 9,
    }
    .write_to(&mut unknown);
    unknown.extend_from_slice(&[0xFF; 160]);
    assert!(matches!(
        s.handle_rtp(t0, &unknown),
        Err(InputError::UnknownPayloadType(99))
    ));
    let stats = s.stats();
    assert_eq!(stats.malformed, 2);
    assert_eq!(stats.undecodable, 1);
    // Valid media after garbage is still recognized.
    let (out, _) = feed(
        &mut s,
        t0,
        &packets("yes-interested.wav", &SendOptions::pcmu()),
    );
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, EventBody::SpeechStarted { .. })));
}

#[test]
fn idle_timeout_ends_the_session() {
    let t0 = Instant::now();
    let config = SessionConfig {
        first_media_timeout: None,
        ..config(AsrMode::Utterance)
    };
    let mut s = Session::new(config, t0).unwrap();
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    s.handle_timeout(t0 + Duration::from_secs(29));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + Duration::from_secs(30));
    drain(&mut s, &mut out);
    assert!(matches!(
        events(&out).last().unwrap(),
        EventBody::SessionEnded {
            cause: EndCause::IdleTimeout,
            ..
        }
    ));
    assert!(s.is_closed());
}

#[test]
fn a_session_that_never_gets_media_ends_at_the_first_media_timeout() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    assert_eq!(s.next_deadline(), t0 + Duration::from_secs(10));
    s.handle_timeout(t0 + Duration::from_secs(10));
    drain(&mut s, &mut out);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        EventBody::SessionEnded {
            cause: EndCause::IdleTimeout,
            ..
        }
    )));
    // With media, only the idle timeout counts.
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let pkts = packets("yes-interested.wav", &SendOptions::pcmu());
    s.handle_rtp(t0, &pkts[0]).unwrap();
    drain(&mut s, &mut out);
    assert_eq!(s.next_deadline(), t0 + Duration::from_secs(30));
}

#[test]
fn engine_failure_becomes_an_error_event_and_the_session_goes_on() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (_, now) = feed(
        &mut s,
        t0,
        &packets("yes-interested.wav", &SendOptions::pcmu()),
    );
    let failure = AsrFailure::Busy {
        detail: "2 workers, queue of 4 full".into(),
    };
    s.handle_asr(now, AsrUpdate::Failed { stream: 1, failure });
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    match events(&out)[0] {
        EventBody::Error {
            code,
            message,
            utterance,
        } => {
            assert_eq!(*code, "asr_busy");
            assert!(message.contains("queue of 4 full"));
            assert_eq!(*utterance, Some(1));
        }
        other => panic!("{other:?}"),
    }
    // The failed stream is no longer awaited: closing ends at once.
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut out);
    assert!(s.is_closed());
}

#[test]
fn slin16_needs_no_resampling_and_is_recognized_as_l16() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (_, now) = feed(&mut s, t0, &packets("balance.wav", &SendOptions::slin16()));
    s.handle_close(now, EndCause::Stopped);
    s.handle_timeout(now + Duration::from_secs(10));
    let mut out = Vec::new();
    drain(&mut s, &mut out);
    let codec = events(&out).into_iter().find_map(|e| match e {
        EventBody::SessionEnded {
            codec,
            payload_type,
            ..
        } => Some((codec.clone(), *payload_type)),
        _ => None,
    });
    assert_eq!(codec, Some((Some("l16/16000".to_string()), Some(118))));
}

#[test]
fn empty_final_for_audio_after_the_last_utterance_is_not_an_event() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Call), t0).unwrap();
    let (mut out, now) = feed(&mut s, t0, &packets("balance.wav", &SendOptions::pcmu()));
    s.handle_close(now, EndCause::Stopped);
    // The engine finalizes the silent tail as utterance 2, which VAD never saw.
    let mut tail = final_for(2, " ");
    if let AsrUpdate::Result(h) = &mut tail {
        h.stream = 0;
    }
    s.handle_asr(now, final_for(1, "what is my balance"));
    s.handle_asr(now, tail);
    s.handle_asr(now, AsrUpdate::Closed { stream: 0 });
    out.clear();
    drain(&mut s, &mut out);
    let finals: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| matches!(e, EventBody::TranscriptFinal { .. }))
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(s.is_closed());
}

#[test]
fn vad_update_waits_for_the_utterance_and_keeps_media_time() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("two-phrases.wav", &SendOptions::pcmu());
    // Mid first phrase: the update must wait for it to end.
    let (mut out, now) = feed(&mut s, t0, &all[..60]);
    let longer = VadConfig {
        hangover_ms: 900,
        ..VadConfig::default()
    };
    s.handle_update(Some(longer), Some(false)).unwrap();
    assert_eq!(s.vad_config().hangover_ms, 900);
    let mut t = now;
    for p in &all[60..] {
        s.handle_rtp(t, p).unwrap();
        drain(&mut s, &mut out);
        t += PTIME;
    }
    let spans: Vec<(u64, u64)> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            EventBody::SpeechEnded {
                start_ms, end_ms, ..
            } => Some((*start_ms, *end_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(spans.len(), 2, "{spans:?}");
    // The rebuilt segmenter counts from the call's media time: phrase two starts at 3.43 s
    // (tests/fixtures/README.md), so its start with 300 ms pre-roll is about 3.13 s, not ~0.
    assert!(spans[1].0 > spans[0].1 && spans[1].0 >= 3000, "{spans:?}");
    // Phrase two ends at 4.43 s; the new 900 ms hangover (not the old 600) follows it.
    assert!(spans[1].1 >= 4434 + 850, "{spans:?}");
    // The first utterance, open when the update came, kept the old hangover.
    assert!(spans[0].1 < 1934 + 850, "{spans:?}");
    let bad = VadConfig {
        frame_ms: 25,
        ..VadConfig::default()
    };
    assert!(s.handle_update(Some(bad), None).is_err());
}

/// Call mode with an engine that fails every stream at once for the first `down` of the call,
/// then takes them: the shell's view, packet by packet.
#[test]
fn call_mode_engine_outage_is_one_error_one_recovery_and_no_lost_audio() {
    let t0 = Instant::now();
    let mut cfg = config(AsrMode::Call);
    cfg.call_retry = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        keep_samples: 16_000 * 10,
        stable_after: Duration::from_secs(1),
    };
    let mut s = Session::new(cfg, t0).unwrap();
    let pkts = packets("two-phrases.wav", &SendOptions::pcmu());
    let down = Duration::from_secs(2);
    let mut now = t0;
    let mut outputs = Vec::new();
    let mut begins = 0;
    for p in &pkts {
        s.handle_rtp(now, p).expect("valid packet");
        let mut step = Vec::new();
        drain(&mut s, &mut step);
        let begun = controls(&step)
            .iter()
            .filter(|c| matches!(c, AsrControl::Begin { .. }))
            .count();
        begins += begun;
        if begun > 0 && now < t0 + down {
            s.handle_asr(
                now,
                AsrUpdate::Failed {
                    stream: CALL_STREAM,
                    failure: AsrFailure::Unavailable {
                        endpoint: "http://127.0.0.1:9".into(),
                        detail: "connection refused".into(),
                    },
                },
            );
            drain(&mut s, &mut step);
        }
        outputs.extend(step);
        now += PTIME;
        if now >= s.next_deadline() {
            s.handle_timeout(now);
            drain(&mut s, &mut outputs);
        }
    }
    let evs = events(&outputs);
    let errors = evs
        .iter()
        .filter(|e| matches!(e, EventBody::Error { .. }))
        .count();
    let recovered: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            EventBody::Recovered { failures, down_ms } => Some((*failures, *down_ms)),
            _ => None,
        })
        .collect();
    // 100, 200, 400, 400, 400... ms backoff over 2 s: a handful of tries, one report.
    assert!((4..=8).contains(&begins), "{begins} stream openings");
    assert_eq!(errors, 1, "one asr.error for the whole outage");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].0 as usize, begins - 1);
    assert!(recovered[0].1 >= down.as_millis() as u64);
    // Everything since the last failure reached the working stream: the kept audio first.
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut outputs);
    let last_begin = outputs
        .iter()
        .rposition(|o| matches!(o, Output::AsrControl(AsrControl::Begin { .. })))
        .expect("a stream was begun");
    let Output::AsrControl(AsrControl::Begin { offset_ms, .. }) = &outputs[last_begin] else {
        unreachable!()
    };
    let since_ms = s.ms(s.media_samples) - offset_ms;
    let sent = audio_samples(&outputs[last_begin..], CALL_STREAM) as u64;
    assert!(since_ms > 0 && *offset_ms < down.as_millis() as u64);
    assert!(
        sent + 16 >= since_ms * 16,
        "the working stream got {sent} samples of the {since_ms} ms since its offset"
    );
}

/// Drive the session's own timers from `from` until `until`, collecting outputs, and
/// return each event with the instant it came out.
fn run_timers(
    s: &mut Session,
    from: Instant,
    until: Instant,
) -> (Vec<Output>, Vec<(Instant, EventBody)>) {
    let mut outputs = Vec::new();
    let mut timed = Vec::new();
    let mut now = from;
    loop {
        loop {
            match s.poll_output() {
                Output::Timeout(at) => {
                    // A deadline already passed must not stall the virtual clock.
                    now = at.max(now + Duration::from_millis(1));
                    break;
                }
                Output::Event(e) => {
                    timed.push((now, e.body.clone()));
                    outputs.push(Output::Event(e));
                }
                other => outputs.push(other),
            }
        }
        if now > until {
            return (outputs, timed);
        }
        s.handle_timeout(now);
    }
}

#[test]
fn packets_stopping_after_speech_end_the_utterance_on_the_clock() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("yes-interested.wav", &SendOptions::pcmu());
    // The fixture ends with 1.2 s of silence: stop sending 100 ms after the speech.
    let sent = all.len() - 55;
    let (mut out, after_last) = feed(&mut s, t0, &all[..sent]);
    let last_packet = after_last - PTIME;
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, EventBody::SpeechEnded { .. })),
        "100 ms of silence is less than the hangover"
    );
    let (more, timed) = run_timers(&mut s, last_packet, last_packet + Duration::from_secs(5));
    out.extend(more);
    let (ended_at, end_ms) = timed
        .iter()
        .find_map(|(at, e)| match e {
            EventBody::SpeechEnded {
                utterance: 1,
                end_ms,
                cause: SpeechEndCause::Silence,
                ..
            } => Some((*at, *end_ms)),
            _ => None,
        })
        .expect("the utterance ends although no packet came");
    let hangover = Duration::from_millis(u64::from(s.vad_config().hangover_ms));
    // Virtual time: the session asked to be woken no later than the hangover after the last
    // audio, plus one packet time.
    assert!(
        ended_at <= last_packet + hangover + PTIME,
        "ended {:?} after the last packet",
        ended_at - last_packet
    );
    assert!(controls(&out).contains(&&AsrControl::End { stream: 1 }));
    assert!(
        s.is_open(),
        "the session itself goes on until its idle timeout"
    );
    // It ends where silence would have: the same utterance fed the whole file.
    let mut whole = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let (full, _) = feed(&mut whole, t0, &all);
    let full_end = first_speech_end_ms(&full);
    assert!(
        end_ms <= full_end && end_ms + 200 >= full_end,
        "on the clock {end_ms} ms, with silence {full_end} ms"
    );
}

#[test]
fn packets_still_flowing_end_the_utterance_the_ordinary_way() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("balance.wav", &SendOptions::pcmu());
    let mut now = t0;
    let mut out = Vec::new();
    for p in &all {
        // Each packet 15 ms late on its slot: within the grace, so no end on the clock.
        s.handle_rtp(now + Duration::from_millis(15), p).unwrap();
        drain(&mut s, &mut out);
        now += PTIME;
        s.handle_timeout(now);
        drain(&mut s, &mut out);
    }
    let ends: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| matches!(e, EventBody::SpeechEnded { .. }))
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(
        s.ms(s.media_samples).abs_diff(all.len() as u64 * 20) <= 20,
        "media time {} ms for {} packets",
        s.ms(s.media_samples),
        all.len()
    );
}

#[test]
fn close_sends_the_pipeline_tail_to_the_engine() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("call-back.wav", &SendOptions::pcmu());
    let sent = all.len() / 2;
    let (mut out, now) = feed(&mut s, t0, &all[..sent]);
    s.handle_close(now, EndCause::Stopped);
    drain(&mut s, &mut out);
    let start_ms = first_speech_start_ms(&out);
    // Media sample m is input time (m - delay): every received sample came out of the
    // resampler, its filter's tail included, and went to the engine.
    let delay = Resampler::new(8_000, 16_000).unwrap().delay() as u64;
    let received = sent as u64 * 320;
    assert_eq!(s.media_samples, received + delay);
    let sent_samples = audio_samples(&out, 1) as u64;
    assert_eq!(sent_samples, received + delay - start_ms * 16);
}

#[test]
fn a_lost_packet_mid_speech_is_filled_from_the_voice_before_it() {
    let t0 = Instant::now();
    let mut s = Session::new(config(AsrMode::Utterance), t0).unwrap();
    let all = packets("call-back.wav", &SendOptions::pcmu());
    let mut now = t0;
    let mut out = Vec::new();
    // 0.5 s of lead-in silence: packet 50 on is speech.
    let lost = 60;
    for (i, p) in all.iter().enumerate() {
        if i != lost {
            s.handle_rtp(now, p).unwrap();
        }
        s.handle_timeout(now);
        drain(&mut s, &mut out);
        now += PTIME;
    }
    let start_ms = first_speech_start_ms(&out);
    let stream: Vec<i16> = out
        .iter()
        .filter_map(|o| match o {
            Output::AsrAudio(a) if a.stream == 1 => Some(a.samples.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    // Media sample m is input time (m - delay) at 16 kHz; the utterance starts at start_ms.
    let delay = Resampler::new(8_000, 16_000).unwrap().delay();
    let first = lost * 320 + delay + 40 - start_ms as usize * 16;
    let audio = &stream[first..first + 160];
    let level = (audio.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 160.0).sqrt();
    assert!(level > 300.0, "concealed audio rms {level}");
}
