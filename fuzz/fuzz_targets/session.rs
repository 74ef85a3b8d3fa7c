//! Fuzz target: one call's `media::session::Session` (and, fed the same datagrams, a bare
//! `media::jitter::JitterBuffer`) driven through its public inputs with arbitrary datagrams,
//! arrival times, timers, DTMF, VAD updates, engine results and a close.
//!
//! Input layout (so seeds can be written by hand, see fuzz/seeds/README.md):
//! byte 0 the session setup (bit 0 call mode, bits 1-2 engine rate 8/16/32/48 kHz, bit 3
//! interim results, bits 4-7 jitter max packets), byte 1 the jitter holdback in 2 ms units,
//! then steps, each an op byte (low 3 bits pick the step) and its fields; see `Step::read`.
//! Missing bytes read as zero.
#![no_main]

use std::time::{Duration, Instant};

use asr_gateway::asr::types::{AsrFailure, AsrUpdate, Hypothesis, Word};
use asr_gateway::config::AsrMode;
use asr_gateway::events::model::EndCause;
use asr_gateway::media::jitter::{JitterBuffer, JitterConfig, JitterOutput};
use asr_gateway::media::rtp;
use asr_gateway::media::session::{Output, Session, SessionConfig};
use asr_gateway::media::vad::VadConfig;
use libfuzzer_sys::fuzz_target;

/// More outputs than this from one step means something is looping.
const MAX_OUTPUTS_PER_STEP: usize = 1_000_000;

fuzz_target!(|input: &[u8]| {
    let mut bytes = Bytes(input);
    let setup = bytes.u8();
    let config = SessionConfig {
        mode: if setup & 1 == 1 {
            AsrMode::Call
        } else {
            AsrMode::Utterance
        },
        engine_rate: [8_000, 16_000, 32_000, 48_000][usize::from(setup >> 1 & 3)],
        interim_results: setup & 8 != 0,
        jitter_max_packets: usize::from(setup >> 4) * 4 + 1,
        jitter_holdback: Duration::from_millis(u64::from(bytes.u8()) * 2),
        ..SessionConfig::default()
    };
    let start = Instant::now();
    let mut call = Call {
        now: start,
        session: Session::new(config.clone(), start).expect("the setups above are valid"),
        jitter: Checked::new(JitterConfig {
            holdback: config.jitter_holdback,
            clock_rate: 8_000,
            max_packets: config.jitter_max_packets,
        }),
    };
    call.drain();
    while !bytes.is_empty() {
        let step = Step::read(&mut bytes);
        call.run(step);
    }
    call.session.handle_close(call.now, EndCause::Stopped);
    call.drain();
    call.jitter.flush();
});

/// Reads fields off the front of the input; past its end every field reads as zero.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) << 16 | u32::from(self.u16())
    }
}

enum Step<'a> {
    /// A datagram `after` the previous step.
    Datagram {
        after: Duration,
        datagram: &'a [u8],
    },
    /// Time passes; `handle_timeout` at the new instant (or at the session's own deadline).
    Timer {
        after: Duration,
        at_deadline: bool,
    },
    Dtmf {
        digit: char,
        duration_ms: u32,
    },
    Update {
        vad: Option<VadConfig>,
        interim: Option<bool>,
    },
    Engine(AsrUpdate),
    Close(EndCause),
}

impl<'a> Step<'a> {
    fn read(bytes: &mut Bytes<'a>) -> Self {
        let op = bytes.u8();
        let flags = op >> 3;
        match op & 7 {
            // Datagrams are the common case: three op values of eight.
            0..=2 => {
                let after = Duration::from_millis(u64::from(bytes.u8()));
                let len = usize::from(bytes.u16());
                Step::Datagram {
                    after,
                    datagram: bytes.take(len),
                }
            }
            3 => Step::Timer {
                after: Duration::from_millis(u64::from(bytes.u16())),
                at_deadline: flags & 1 == 1,
            },
            4 => Step::Dtmf {
                digit: char::from(bytes.u8()),
                duration_ms: bytes.u32(),
            },
            5 => Step::Update {
                vad: (flags & 1 == 1).then(|| VadConfig {
                    aggressiveness: bytes.u8(),
                    preroll_ms: u32::from(bytes.u16()),
                    hangover_ms: u32::from(bytes.u16()),
                    min_speech_ms: u32::from(bytes.u16()),
                    max_utterance_ms: bytes.u32(),
                    frame_ms: u32::from(bytes.u8()),
                }),
                interim: (flags & 2 == 2).then_some(flags & 4 == 4),
            },
            6 => Step::Engine(engine_update(flags, bytes)),
            _ => Step::Close(
                [
                    EndCause::Stopped,
                    EndCause::IdleTimeout,
                    EndCause::Shutdown,
                    EndCause::Hangup,
                ][usize::from(flags & 3)],
            ),
        }
    }
}

fn engine_update(flags: u8, bytes: &mut Bytes<'_>) -> AsrUpdate {
    let stream = u32::from(bytes.u8());
    match flags & 3 {
        0 | 1 => {
            let utterance = u32::from(bytes.u8());
            let text_len = usize::from(bytes.u8());
            let text = String::from_utf8_lossy(bytes.take(text_len)).into_owned();
            let words = (0..bytes.u8() % 4)
                .map(|i| Word {
                    word: format!("w{i}"),
                    start_ms: u64::from(bytes.u16()),
                    end_ms: u64::from(bytes.u16()),
                    confidence: 0.5,
                })
                .collect();
            AsrUpdate::Result(Hypothesis {
                stream,
                utterance,
                is_final: flags & 1 == 1,
                text,
                confidence: f32::from(bytes.u8()) / 255.0,
                words,
                start_ms: u64::from(bytes.u32()),
                end_ms: u64::from(bytes.u32()),
            })
        }
        2 => AsrUpdate::Failed {
            stream,
            failure: AsrFailure::Busy {
                detail: "fuzz".into(),
            },
        },
        _ if flags & 4 == 4 => AsrUpdate::EngineSwitched {
            stream,
            from: "a".into(),
            to: "b".into(),
            failure: AsrFailure::Busy {
                detail: "fuzz".into(),
            },
            replayed_ms: u64::from(bytes.u32()),
        },
        _ => AsrUpdate::Closed { stream },
    }
}

struct Call {
    now: Instant,
    session: Session,
    jitter: Checked,
}

impl Call {
    fn run(&mut self, step: Step<'_>) {
        match step {
            Step::Datagram { after, datagram } => {
                self.now += after;
                let _ = self.session.handle_rtp(self.now, datagram);
                self.jitter.push(self.now, datagram);
            }
            Step::Timer { after, at_deadline } => {
                self.now += after;
                if at_deadline {
                    if let Output::Timeout(deadline) = self.session.poll_output() {
                        // Only forward: a deadline in the past means "now".
                        self.now = self.now.max(deadline);
                    }
                }
                self.session.handle_timeout(self.now);
                self.jitter.poll(self.now);
            }
            Step::Dtmf { digit, duration_ms } => self.session.handle_dtmf(digit, duration_ms),
            Step::Update { vad, interim } => {
                let before = self.session.vad_config();
                match self.session.handle_update(vad, interim) {
                    Ok(()) => assert_eq!(self.session.vad_config(), vad.unwrap_or(before)),
                    Err(_) => assert_eq!(self.session.vad_config(), before),
                }
            }
            Step::Engine(update) => self.session.handle_asr(self.now, update),
            Step::Close(cause) => {
                self.session.handle_close(self.now, cause);
                assert!(!self.session.is_open());
            }
        }
        self.drain();
    }

    /// Take every output until the session asks to be woken.
    fn drain(&mut self) {
        for _ in 0..MAX_OUTPUTS_PER_STEP {
            if let Output::Timeout(_) = self.session.poll_output() {
                return;
            }
        }
        panic!("a session step produced more than {MAX_OUTPUTS_PER_STEP} outputs");
    }
}

/// A jitter buffer used as its contract says, checking what it promises: within a stream
/// every sequence slot is released exactly once, as a packet or counted lost.
struct Checked {
    buffer: JitterBuffer,
    /// Ext sequence the next packet of the current stream must have, once known.
    next: Option<u64>,
}

impl Checked {
    fn new(config: JitterConfig) -> Self {
        Self {
            buffer: JitterBuffer::new(config),
            next: None,
        }
    }

    fn push(&mut self, now: Instant, datagram: &[u8]) {
        if let Ok(packet) = rtp::parse(datagram) {
            self.buffer.push(now, &packet.header, packet.payload);
            self.poll(now);
        }
    }

    fn poll(&mut self, now: Instant) {
        while let Some(out) = self.buffer.poll(now) {
            self.check(out);
        }
        // Drained: whatever is still held waits for a deadline that has not passed yet.
        let timeout = self.buffer.poll_timeout();
        assert!(timeout.is_none_or(|t| t > now), "a deadline in the past");
    }

    fn flush(&mut self) {
        while let Some(out) = self.buffer.flush() {
            self.check(out);
        }
        assert!(self.buffer.poll_timeout().is_none(), "flushed, yet holding");
    }

    fn check(&mut self, out: JitterOutput) {
        match out {
            JitterOutput::Packet(p) => {
                if let Some(next) = self.next {
                    assert_eq!(
                        p.ext_sequence, next,
                        "a sequence slot was skipped or repeated"
                    );
                }
                self.next = Some(p.ext_sequence + 1);
            }
            JitterOutput::Lost { packets, .. } => {
                assert!(packets > 0, "zero packets lost");
                let next = self.next.expect("loss before the stream's first packet");
                self.next = Some(next + u64::from(packets));
            }
            JitterOutput::Talkspurt { .. } => {}
            JitterOutput::NewStream { .. } => self.next = None,
        }
    }
}
