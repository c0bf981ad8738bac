//! Out: the one queue of changes (proposals and records) on their way to the stream, the
//! store's [`Log`] over it, and the task that publishes them in order and runs each one's
//! callback once JetStream acknowledged it.

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::{Cluster, CATCH_UP};
use crate::store::{Done, Log, LogPlace, Refused};

/// One change on its way to the stream.
pub(super) struct Outgoing {
    pub(super) subject: &'static str,
    pub(super) payload: Vec<u8>,
    pub(super) done: Done,
    /// Its place among the changes on their way (`Cluster::inflight`), given back once its
    /// fate is known.
    pub(super) _place: OwnedSemaphorePermit,
}

/// A record's place, taken by `Log::reserve`.
struct Place {
    queue: mpsc::Sender<Outgoing>,
    place: OwnedSemaphorePermit,
}

impl LogPlace for Place {
    fn append(self: Box<Self>, record: Vec<u8>, done: Done) {
        let out = Outgoing {
            subject: "rec",
            payload: record,
            done,
            _place: self.place,
        };
        // The queue holds as many as there are places, so only a stopped publisher refuses.
        // The callback then runs elsewhere: the caller may hold the locks an undo takes.
        if let Err(e) = self.queue.try_send(out) {
            let out = match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
            };
            refused_later(out.done);
        }
    }
}

/// Runs the callbacks of records the publisher never took, on one thread of their own.
fn refused_later(done: Done) {
    static LATER: std::sync::OnceLock<crossbeam_channel::Sender<Done>> = std::sync::OnceLock::new();
    let tx = LATER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Done>();
        let spawned = std::thread::Builder::new()
            .name("cluster-refused".into())
            .spawn(move || {
                for done in rx {
                    done(false);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cluster: no thread for refused records: {e}");
        }
        tx
    });
    if let Err(e) = tx.send(done) {
        // No thread to run it: it is dropped, and its commit ends as not kept.
        drop(e);
    }
}

impl Log for Cluster {
    fn reserve(&self) -> Result<Box<dyn LogPlace>, Refused> {
        let place = self.place()?;
        Ok(Box::new(Place {
            queue: self.queue.clone(),
            place,
        }))
    }

    fn failed(&self) -> Option<String> {
        match self.client.connection_state() {
            State::Connected => None,
            _ => Some("NATS is unreachable".into()),
        }
    }
}

/// Publishes queued changes in order. Each one's callback runs once JetStream acknowledged it
/// and this node's reader went past it: every node's reader gets it at about that moment,
/// so a client told of a logout (say) finds it done on the next node it asks.
pub(super) async fn publish(
    js: jetstream::Context,
    base: String,
    mut rx: mpsc::Receiver<Outgoing>,
    caught: watch::Receiver<u64>,
) {
    let (op, rec) = (format!("{base}.op"), format!("{base}.rec"));
    while let Some(out) = rx.recv().await {
        // The place is given back with the callback's run, not before.
        let Outgoing {
            subject,
            payload,
            done,
            _place: place,
        } = out;
        let subject = if subject == "op" { &op } else { &rec };
        match js.publish(subject.clone(), payload.into()).await {
            Ok(ack) => {
                let mut caught = caught.clone();
                tokio::spawn(async move {
                    let acked = ack.await;
                    if let Ok(ack) = &acked {
                        let read = caught.wait_for(|s| *s >= ack.sequence);
                        let _ = tokio::time::timeout(CATCH_UP, read).await;
                    }
                    done(acked.is_ok());
                    drop(place);
                });
            }
            Err(e) => {
                tracing::warn!("cluster: publish failed: {e}");
                done(false);
                drop(place);
            }
        }
    }
}
