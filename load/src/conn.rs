//! One WebSocket connection of the generator: the upgrade, the wait for `hello`, a reader task
//! that counts and times stamped entries, and a writer task that owns the socket's write half.
//!
//! The reader parses every frame a `read()` brought before reading again, takes the clock once
//! per read (all those frames arrived together), and publishes its counts to [`Shared`] once
//! per read. It never allocates or parses JSON for an entry frame.

use crate::error::{LoadError, Result};
use crate::frame::{self, OpCode, XorShift};
use crate::http::{self, parse_head};
use crate::roster::Roster;
use crate::scan::{self, FrameType};
use crate::stats::{
    new_recv_histogram, Arrival, RecvHistogram, Shared, MAX_LATENCY_US, MAX_PHASES,
};
use crate::tls::{ReadHalf, WriteHalf};
use parley_protocol::ServerFrame;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Initial read buffer. Default is 64 KiB: large enough that a busy receiver parses
    /// hundreds of frames per read. The connection scenario uses 4 KiB.
    pub read_buf: usize,
    /// Largest server frame accepted. Default is 16 MiB (history frames can be large).
    pub max_frame: u64,
    /// Capacity of the queue to the writer task, in batches. Default is 64.
    pub write_queue: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            read_buf: 64 * 1024,
            max_frame: 16 * 1024 * 1024,
            write_queue: 64,
        }
    }
}

/// What the writer task is asked to write.
#[derive(Debug)]
pub enum Outgoing {
    /// Already-encoded (masked) frames.
    Frames(Vec<u8>),
    /// Send a normal close frame and stop writing.
    Close,
}

/// What a reader measured, returned when it stops.
#[derive(Default)]
pub struct ReaderReport {
    /// Latency histogram per phase (only phases this connection saw).
    pub latency: Vec<(u32, RecvHistogram)>,
}

/// An open, authenticated WebSocket connection whose `hello` has arrived.
pub struct Connection {
    /// Queue to the writer task.
    pub tx: mpsc::Sender<Outgoing>,
    /// The `hello` frame's payload.
    pub hello: Vec<u8>,
    reader: JoinHandle<ReaderReport>,
    writer: JoinHandle<()>,
}

impl Connection {
    /// Upgrades a new TCP connection with `token` and waits for `hello`, then starts its
    /// reader and writer tasks. The reader stops when `stop` changes.
    pub async fn open(
        addr: SocketAddr,
        local: Option<IpAddr>,
        token: &str,
        cfg: &WsConfig,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
        seed: u64,
    ) -> Result<Connection> {
        let mut stream = http::connect(addr, local).await?;
        let mut rng = XorShift::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&rng.next_u64().to_ne_bytes());
        key[8..].copy_from_slice(&rng.next_u64().to_ne_bytes());
        let request = format!(
            "GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            frame::base64(&key)
        );
        stream.write_all(request.as_bytes()).await?;

        let mut buf = vec![0u8; cfg.read_buf.max(4096)];
        let mut end = 0;
        let head = loop {
            if let Some(head) = parse_head(&buf[..end])? {
                break head;
            }
            if end == buf.len() {
                return Err(LoadError::Protocol("upgrade response head too long".into()));
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(LoadError::Protocol(
                    "connection closed during upgrade".into(),
                ));
            }
            end += n;
        };
        if head.status != 101 {
            // Read what body there is for the report.
            let body = String::from_utf8_lossy(&buf[head.len..end]).into_owned();
            return Err(LoadError::Status {
                what: "websocket upgrade".into(),
                status: head.status,
                body,
            });
        }
        buf.copy_within(head.len..end, 0);
        end -= head.len;

        // The first frame must be `hello`.
        let hello = loop {
            if let Some((f, used)) = frame::parse(&buf[..end], cfg.max_frame)? {
                if f.opcode == OpCode::Close {
                    let code = frame::close_code(f.payload).unwrap_or(0);
                    return Err(LoadError::Protocol(format!(
                        "closed with {code} before hello"
                    )));
                }
                if f.opcode != OpCode::Text
                    || !f.fin
                    || scan::frame_type(f.payload) != FrameType::Hello
                {
                    return Err(LoadError::Protocol(format!(
                        "first frame is not hello: {}",
                        String::from_utf8_lossy(&f.payload[..f.payload.len().min(200)])
                    )));
                }
                let hello = f.payload.to_vec();
                buf.copy_within(used..end, 0);
                end -= used;
                break hello;
            }
            if let Some(need) = frame::frame_len(&buf[..end]) {
                if need > buf.len() as u64 && need <= cfg.max_frame + 14 {
                    buf.resize(need as usize, 0);
                }
            }
            if end == buf.len() {
                return Err(LoadError::Protocol("hello frame too large".into()));
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(LoadError::Protocol("connection closed before hello".into()));
            }
            end += n;
        };

        let roster = shared
            .roster
            .as_ref()
            .and_then(|r| Some((r.clone(), r.row_of_hello(&hello)?)));
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(cfg.write_queue.max(1));
        let writer = tokio::spawn(write_loop(wr, rx, rng.clone()));
        let reader = tokio::spawn(
            Reader {
                rd,
                buf,
                start: 0,
                end,
                max_frame: cfg.max_frame,
                shared,
                ctl: tx.clone(),
                rng,
                latency: (0..MAX_PHASES).map(|_| None).collect(),
                pending: [0; MAX_PHASES],
                shared_samples: Vec::new(),
                worst_us: 0,
                fragment: None,
                roster,
                answers: Vec::new(),
                scratch: Vec::new(),
                pending_reads: [0; MAX_PHASES],
            }
            .run(stop),
        );
        Ok(Connection {
            tx,
            hello,
            reader,
            writer,
        })
    }

    /// Asks the writer to close, then waits for the reader (which the caller stops through the
    /// `stop` channel) and returns what it measured.
    pub async fn finish(self) -> ReaderReport {
        let _ = self.tx.try_send(Outgoing::Close);
        drop(self.tx);
        let report = self.reader.await.unwrap_or_default();
        let _ = self.writer.await;
        report
    }
}

async fn write_loop(mut wr: WriteHalf, mut rx: mpsc::Receiver<Outgoing>, mut rng: XorShift) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Frames(bytes) => {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Outgoing::Close => {
                let mut close = Vec::with_capacity(8);
                frame::encode_masked(
                    &mut close,
                    OpCode::Close,
                    &1000u16.to_be_bytes(),
                    rng.mask(),
                );
                let _ = wr.write_all(&close).await;
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

struct Reader {
    rd: ReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: u64,
    shared: Arc<Shared>,
    /// For pongs and close replies.
    ctl: mpsc::Sender<Outgoing>,
    rng: XorShift,
    latency: Vec<Option<RecvHistogram>>,
    /// Deliveries per phase since the last publish to `shared`.
    pending: [u64; MAX_PHASES],
    /// Samples for `shared.shared_latency` and `shared.arrivals` (phase, µs, send time),
    /// flushed once per read.
    shared_samples: Vec<(u32, u64, u64)>,
    /// Worst latency since the last publish, µs.
    worst_us: u64,
    /// A fragmented text message being reassembled (rare: servers send whole frames).
    fragment: Option<Vec<u8>>,
    /// Where this connection's `presence` frames are recorded, and its row there.
    roster: Option<(Arc<Roster>, usize)>,
    /// Encoded `read` frames not yet handed to the writer (see [`Shared::answer_reads`]).
    answers: Vec<u8>,
    /// Payload of the `read` frame being encoded.
    scratch: Vec<u8>,
    /// `read` frames per phase since the last publish to `shared`.
    pending_reads: [u64; MAX_PHASES],
}

enum Step {
    Continue,
    Stop,
}

impl Reader {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> ReaderReport {
        let mut now_ns = self.shared.clock.now_ns();
        loop {
            if let Step::Stop = self.process(now_ns) {
                break;
            }
            self.publish(now_ns);
            self.hand_answers();
            if !self.make_room() {
                self.ended("frame over the limit".into(), 0);
                break;
            }
            let read = tokio::select! {
                biased;
                _ = stop.changed() => break,
                // Answers that found the writer's queue full go as soon as it has room,
                // while the connection keeps reading.
                permit = self.ctl.reserve(), if !self.answers.is_empty() => {
                    match permit {
                        Ok(p) => p.send(Outgoing::Frames(std::mem::take(&mut self.answers))),
                        // The writer is gone: nobody will send them.
                        Err(_) => self.answers.clear(),
                    }
                    continue;
                }
                r = self.rd.read(&mut self.buf[self.end..]) => r,
            };
            match read {
                Ok(0) => {
                    self.ended("without close frame".into(), 0);
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) => {
                    self.ended(format!("read error {:?}", e.kind()), 0);
                    break;
                }
            }
            now_ns = self.shared.clock.now_ns();
        }
        self.publish(now_ns);
        ReaderReport {
            latency: self
                .latency
                .into_iter()
                .enumerate()
                .filter_map(|(i, h)| h.map(|h| (i as u32, h)))
                .collect(),
        }
    }

    /// Handles every whole frame in the buffer.
    fn process(&mut self, now_ns: u64) -> Step {
        loop {
            let parsed = frame::parse(&self.buf[self.start..self.end], self.max_frame);
            let (fin, opcode, range) = match parsed {
                Ok(Some((f, used))) => {
                    let payload_start = self.start + used - f.payload.len();
                    let r = (f.fin, f.opcode, payload_start..self.start + used);
                    self.start += used;
                    r
                }
                Ok(None) => return Step::Continue,
                Err(e) => {
                    self.ended(format!("bad frame: {e}"), 0);
                    return Step::Stop;
                }
            };
            match opcode {
                OpCode::Text if fin => {
                    let payload = &self.buf[range];
                    if let Some((roster, row)) = &self.roster {
                        if scan::frame_type(payload) == FrameType::Presence {
                            roster.note(*row, payload, now_ns);
                        }
                    }
                    let phase = Self::on_message(
                        payload,
                        now_ns,
                        &self.shared,
                        &mut self.latency,
                        &mut self.pending,
                        &mut self.shared_samples,
                        &mut self.worst_us,
                    );
                    if let Some(phase) = phase {
                        if self.shared.answer_reads.load(Ordering::Relaxed)
                            && append_read(
                                &mut self.answers,
                                &mut self.scratch,
                                payload,
                                &mut self.rng,
                            )
                        {
                            self.pending_reads[phase as usize] += 1;
                        }
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    self.fragment =
                        (opcode == OpCode::Text && !fin).then(|| self.buf[range].to_vec());
                    if opcode == OpCode::Binary {
                        self.shared.other_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
                OpCode::Continuation => {
                    if let Some(mut frag) = self.fragment.take() {
                        frag.extend_from_slice(&self.buf[range]);
                        if fin {
                            Self::on_message(
                                &frag,
                                now_ns,
                                &self.shared,
                                &mut self.latency,
                                &mut self.pending,
                                &mut self.shared_samples,
                                &mut self.worst_us,
                            );
                        } else if frag.len() as u64 > self.max_frame {
                            self.ended("message over the limit".into(), 0);
                            return Step::Stop;
                        } else {
                            self.fragment = Some(frag);
                        }
                    }
                }
                OpCode::Ping => {
                    let mut pong = Vec::with_capacity(6 + range.len());
                    frame::encode_masked(
                        &mut pong,
                        OpCode::Pong,
                        &self.buf[range],
                        self.rng.mask(),
                    );
                    let _ = self.ctl.try_send(Outgoing::Frames(pong));
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    let code = frame::close_code(&self.buf[range]).unwrap_or(1005);
                    self.ended(format!("with code {code}"), code);
                    let _ = self.ctl.try_send(Outgoing::Close);
                    return Step::Stop;
                }
            }
        }
    }

    /// Counts and times one whole text message; returns the phase of a stamped entry.
    fn on_message(
        payload: &[u8],
        now_ns: u64,
        shared: &Shared,
        latency: &mut [Option<RecvHistogram>],
        pending: &mut [u64; MAX_PHASES],
        shared_samples: &mut Vec<(u32, u64, u64)>,
        worst_us: &mut u64,
    ) -> Option<u32> {
        match scan::frame_type(payload) {
            FrameType::Entry => {
                if let Some(stamp) = scan::find_stamp(payload) {
                    let phase = stamp.phase as usize % MAX_PHASES;
                    let us = (now_ns.saturating_sub(stamp.sent_ns) / 1000).min(MAX_LATENCY_US);
                    pending[phase] += 1;
                    *worst_us = (*worst_us).max(us);
                    if shared.shared_latency.is_some() || shared.arrivals.is_some() {
                        shared_samples.push((phase as u32, us, stamp.sent_ns));
                    }
                    if shared.shared_latency.is_none() {
                        latency[phase]
                            .get_or_insert_with(new_recv_histogram)
                            .saturating_record(us);
                    }
                    return Some(phase as u32);
                }
            }
            FrameType::Error => {
                let code = match serde_json::from_slice::<ServerFrame>(payload) {
                    Ok(ServerFrame::Error { code, .. }) => code,
                    _ => "unparsable".into(),
                };
                shared.count_error(code);
            }
            _ => {}
        }
        shared.other_frames.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Hands the `read` frames of this read to the writer; if its queue is full they wait
    /// in `answers` for room (see `run`). A writer that is gone takes none.
    fn hand_answers(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        match self
            .ctl
            .try_send(Outgoing::Frames(std::mem::take(&mut self.answers)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(Outgoing::Frames(bytes))) => self.answers = bytes,
            Err(_) => {}
        }
    }

    /// Counts how the connection ended, by description, and in the roster by close code.
    fn ended(&self, what: String, code: u16) {
        self.shared.count_close(what);
        if let Some((roster, row)) = &self.roster {
            roster.end(*row, code);
        }
    }

    /// Publishes this read's deliveries to the shared counters.
    fn publish(&mut self, now_ns: u64) {
        if self.worst_us > 0 {
            self.shared.note_worst(now_ns, self.worst_us);
            self.worst_us = 0;
        }
        for (phase, n) in self.pending.iter_mut().enumerate() {
            if *n > 0 {
                let c = &self.shared.phases[phase];
                c.received.fetch_add(*n, Ordering::Relaxed);
                c.last_arrival_ns.fetch_max(now_ns, Ordering::Relaxed);
                *n = 0;
            }
        }
        for (phase, n) in self.pending_reads.iter_mut().enumerate() {
            if *n > 0 {
                self.shared.phases[phase]
                    .reads
                    .fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        if !self.shared_samples.is_empty() {
            if let Some(Ok(mut hists)) = self.shared.shared_latency.as_ref().map(|m| m.lock()) {
                for &(phase, us, _) in &self.shared_samples {
                    hists[phase as usize].saturating_record(us);
                }
            }
            if let Some(Ok(mut log)) = self.shared.arrivals.as_ref().map(|m| m.lock()) {
                log.extend(
                    self.shared_samples
                        .iter()
                        .map(|&(phase, _, sent_ns)| Arrival {
                            phase,
                            sent_ns,
                            received_ns: now_ns,
                        }),
                );
            }
            self.shared_samples.clear();
        }
    }

    /// Moves unparsed bytes to the front and grows the buffer for a frame larger than it.
    /// Returns false if the next frame is over the limit.
    fn make_room(&mut self) -> bool {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.buf.len() - self.end < self.buf.len() / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if let Some(need) = frame::frame_len(&self.buf[self.start..self.end]) {
            if need > self.max_frame + 14 {
                return false;
            }
            let need = need as usize;
            if self.start + need > self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                if need > self.buf.len() {
                    self.buf.resize(need, 0);
                }
            }
        }
        if self.end == self.buf.len() {
            // A full buffer without a whole frame: can only be a header not yet complete in a
            // tiny buffer.
            let len = self.buf.len();
            self.buf.resize(len * 2, 0);
        }
        true
    }
}

/// Appends a masked `{"type":"read","room","seq"}` frame answering the `entry` frame
/// `payload`. Returns false, appending nothing, if the entry's room and seq are not found.
fn append_read(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    payload: &[u8],
    rng: &mut XorShift,
) -> bool {
    let Some((room, seq)) = scan::entry_room_seq(payload) else {
        return false;
    };
    scratch.clear();
    scratch.extend_from_slice(br#"{"type":"read","room":""#);
    scratch.extend_from_slice(room);
    scratch.extend_from_slice(br#"","seq":"#);
    scan::push_u64(scratch, seq);
    scratch.push(b'}');
    frame::encode_masked(out, OpCode::Text, scratch, rng.mask());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Stamp;

    #[test]
    fn answers_an_entry_with_a_read_frame() {
        let entry = scan::sample_entry_frame(
            Stamp {
                phase: 2,
                sent_ns: 7,
            },
            100,
        );
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut rng = XorShift::new(3);
        assert!(append_read(&mut out, &mut scratch, &entry[4..], &mut rng));
        assert!(!append_read(&mut out, &mut scratch, b"{}", &mut rng));
        // A short client frame: FIN + text, masked 7-bit length, the mask, the payload.
        assert_eq!(out[0], 0x81);
        let len = usize::from(out[1] & 0x7f);
        assert_eq!(out[1] & 0x80, 0x80);
        let mask = [out[2], out[3], out[4], out[5]];
        let mut payload = out[6..].to_vec();
        assert_eq!(payload.len(), len);
        frame::apply_mask(&mut payload, mask);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "read", "room": "r7Hc2kQ9", "seq": 123456})
        );
    }

    /// The hand-built `read` answer is the shared `ClientFrame::read`, byte for byte.
    #[test]
    fn read_frames_are_the_shared_client_frame() {
        let entry = scan::sample_entry_frame(
            Stamp {
                phase: 0,
                sent_ns: 1,
            },
            10,
        );
        let (mut out, mut scratch, mut rng) = (Vec::new(), Vec::new(), XorShift::new(5));
        assert!(append_read(&mut out, &mut scratch, &entry[4..], &mut rng));
        let shared = parley_protocol::ClientFrame::read("r7Hc2kQ9", 123456);
        assert_eq!(String::from_utf8(scratch).unwrap(), shared.to_json());
    }
}
