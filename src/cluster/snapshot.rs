//! Snapshots in the stream (`STREAM-snap`): writing one in chunks, loading the latest, and
//! choosing what a starting node loads: its copy in `--data-dir` or that snapshot.

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};

use super::local::{LocalCopy, Unusable};
use crate::chat::Core;
use crate::store::snapshot::{frame, unframe};

/// Loads the state a starting node reads the stream on from: the copy in its data directory
/// when it can serve, else the latest snapshot. Returns the stream sequence it is at, the
/// snapshot point then, and where it came from, for the log.
pub(super) async fn load_state(
    core: &Core,
    local: &LocalCopy,
    info: &stream::Info,
    snaps: &stream::Stream,
    base: &str,
) -> Result<(u64, u64, &'static str), String> {
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    match local.load(core, first, last) {
        Ok((seq, point)) => Ok((seq, point, "its data directory")),
        Err(why) => {
            if !matches!(why, Unusable::Missing) {
                tracing::warn!(
                    "cluster: the state saved in the data directory is not used ({why}); \
                     loading the latest snapshot"
                );
            }
            let seq = load_snapshot(core, snaps, base).await?;
            Ok((seq, seq, "the latest snapshot"))
        }
    }
}

/// The latest snapshot: at which stream sequence, and where its chunks are.
#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    seq: u64,
    first_chunk: u64,
    chunks: u64,
}

/// Bytes per snapshot chunk, under NATS's default 1 MB message limit.
const CHUNK_BYTES: usize = 512 * 1024;

/// Writes a snapshot of the state at stream sequence `seq` (its records, length-prefixed, in
/// chunks), then its head; then drops older snapshots and the stream up to the previous
/// point, which keeps a stretch for nodes a little behind. Returns its size.
pub(super) async fn write_snapshot(
    records: impl Iterator<Item = Vec<u8>> + Send + 'static,
    seq: u64,
    (js, stream, snaps): (&jetstream::Context, &stream::Stream, &stream::Stream),
    base: &str,
    previous: u64,
) -> Result<u64, String> {
    let chunks = tokio::task::spawn_blocking(move || frame(records, CHUNK_BYTES))
        .await
        .map_err(|e| e.to_string())?;
    let bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let count = chunks.len() as u64;
    let mut first_chunk = 0;
    for chunk in chunks {
        let ack = js
            .publish(format!("{base}-snap.chunk"), chunk.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if first_chunk == 0 {
            first_chunk = ack.sequence;
        }
    }
    let head = SnapshotHead {
        seq,
        first_chunk,
        chunks: count,
    };
    let head = serde_json::to_vec(&head).unwrap_or_default();
    js.publish(format!("{base}-snap.head"), head.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    // Older chunks only: nats-server 2.9 reads a filtered purge up to sequence 1 as no bound
    // at all, and there is nothing older than the first chunk ever written anyway.
    if first_chunk > 1 {
        snaps
            .purge()
            .filter(format!("{base}-snap.chunk"))
            .sequence(first_chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    snaps
        .purge()
        .filter(format!("{base}-snap.head"))
        .keep(1)
        .await
        .map_err(|e| e.to_string())?;
    if previous > 0 {
        stream
            .purge()
            .sequence(previous + 1)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Loads the latest snapshot into the core, if there is one; returns its stream sequence.
async fn load_snapshot(core: &Core, snaps: &stream::Stream, base: &str) -> Result<u64, String> {
    let head = match snaps
        .get_last_raw_message_by_subject(&format!("{base}-snap.head"))
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(0),
        Err(e) => return Err(format!("cannot read the latest snapshot: {e}")),
    };
    let head: SnapshotHead = serde_json::from_slice(&head.payload)
        .map_err(|e| format!("the latest snapshot's head is unreadable: {e}"))?;
    for n in 0..head.chunks {
        let chunk = snaps
            .get_raw_message(head.first_chunk + n)
            .await
            .map_err(|e| format!("snapshot chunk {n}: {e}"))?;
        unframe(&chunk.payload, &mut |r| core.apply(&r))
            .map_err(|e| format!("snapshot chunk {n}: {e}"))?;
    }
    Ok(head.seq)
}
