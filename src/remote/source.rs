//! The remote as a run's [`ResultSource`]: a stage the local cache misses
//! is fetched when the remote has it (read-through), and, when asked, each
//! result the run computes is pushed (write-through). Nothing here fails a
//! stage: an error is a warning and the stage runs; once the remote is
//! found unreachable, the rest of the run does not ask it again.

use tuneflow_cache::{Index, Manifest, ObjectStore, StageDigest};

use super::transfer::Moved;
use super::Remote;
use crate::run::lookup::ResultSource;

/// What happened to one stage's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transfer {
    /// The stage.
    pub stage: String,
    /// Its key (hex).
    pub key: String,
    /// "fetched", "absent", "pushed" or "failed".
    pub outcome: &'static str,
    /// What moved.
    pub moved: Moved,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Remote {
    fn record(&self, stage: &str, key: &StageDigest, outcome: &'static str, moved: Moved) {
        self.log.lock().expect("log lock").push(Transfer {
            stage: stage.to_owned(),
            key: key.to_hex(),
            outcome,
            moved,
            error: None,
        });
    }

    fn failed(&self, stage: &str, key: &StageDigest, e: &super::RemoteError) {
        self.note(e);
        tracing::warn!(target: "tuneflow::remote", "stage `{stage}`: {e}");
        self.log.lock().expect("log lock").push(Transfer {
            stage: stage.to_owned(),
            key: key.to_hex(),
            outcome: "failed",
            moved: Moved::default(),
            error: Some(e.to_string()),
        });
    }

    /// What was fetched and pushed so far, in order.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.log.lock().expect("log lock").clone()
    }
}

impl ResultSource for Remote {
    fn fetch(&self, stage: &str, key: &StageDigest, index: &Index, store: &ObjectStore) -> bool {
        if self.is_down() {
            return false;
        }
        match Remote::fetch(self, key, index, store) {
            Ok(Some((_, moved))) => {
                if self.announce {
                    tracing::info!(
                    target: "tuneflow::remote",
                    "stage `{stage}`: fetched from {} ({} objects, {} bytes; {} already here)",
                    self.shown, moved.objects, moved.bytes, moved.present
                    );
                }
                self.record(stage, key, "fetched", moved);
                true
            }
            Ok(None) => {
                self.record(stage, key, "absent", Moved::default());
                false
            }
            Err(e) => {
                self.failed(stage, key, &e);
                false
            }
        }
    }

    fn offer(
        &self,
        stage: &str,
        key: &StageDigest,
        manifest: &Manifest,
        index: &Index,
        store: &ObjectStore,
    ) {
        if self.is_down() {
            return;
        }
        match self.push(key, manifest, index, store) {
            Ok(moved) => {
                tracing::info!(
                    target: "tuneflow::remote",
                    "stage `{stage}`: pushed to {} ({} objects, {} bytes)",
                    self.shown, moved.objects, moved.bytes
                );
                self.record(stage, key, "pushed", moved);
            }
            Err(e) => self.failed(stage, key, &e),
        }
    }
}
