//! [`Topology`]: several namespaces of one run, torn down together.

use crate::names::{cleanup_prefix, unique_prefix};
use crate::netns::Netns;
use crate::{Result, DEFAULT_GRACE};
use std::fmt;
use std::sync::Arc;

/// Owns several namespaces named `<prefix><suffix>`; on drop (also while unwinding) it first
/// ends every tracked process in all of them (newest namespace first), then deletes the
/// namespaces (newest first), then sweeps anything else left with its prefix.
pub struct Topology {
    prefix: String,
    nss: Vec<Arc<Netns>>,
    keep: bool,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("prefix", &self.prefix)
            .field("namespaces", &self.nss)
            .finish()
    }
}

impl Topology {
    /// A topology with a fresh [`unique_prefix`] of `tag`.
    pub fn new(tag: &str) -> Topology {
        Topology::with_prefix(unique_prefix(tag))
    }

    /// A topology with a caller-chosen prefix (e.g. the lab's fixed one, so `lab down`
    /// can find leftovers with [`cleanup_prefix`]).
    pub fn with_prefix(prefix: impl Into<String>) -> Topology {
        Topology {
            prefix: prefix.into(),
            nss: Vec::new(),
            keep: false,
        }
    }

    /// The name prefix of every namespace this topology creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<prefix><suffix>`.
    pub fn add(&mut self, suffix: &str) -> Result<Arc<Netns>> {
        let ns = Arc::new(Netns::create(&format!("{}{suffix}", self.prefix))?);
        self.nss.push(ns.clone());
        Ok(ns)
    }

    /// The namespaces created so far, oldest first.
    pub fn namespaces(&self) -> &[Arc<Netns>] {
        &self.nss
    }

    /// Finds a namespace by its suffix.
    pub fn get(&self, suffix: &str) -> Option<&Arc<Netns>> {
        let full = format!("{}{suffix}", self.prefix);
        self.nss.iter().find(|n| n.name() == full)
    }

    /// Leaves everything in place on drop (`lab --keep`).
    pub fn keep(&mut self) {
        self.keep = true;
        for ns in &self.nss {
            ns.keep();
        }
    }

    /// Tears everything down now; errors are collected, teardown continues past them.
    pub fn teardown(&mut self) -> Result<()> {
        let mut first = None;
        for ns in self.nss.iter().rev() {
            ns.terminate_all(DEFAULT_GRACE);
        }
        for ns in self.nss.iter().rev() {
            if let Err(e) = ns.delete() {
                first.get_or_insert(e);
            }
        }
        self.nss.clear();
        if self.prefix.len() >= 3 {
            if let Err(e) = cleanup_prefix(&self.prefix) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "leaktest-netns: teardown of {}* incomplete: {e}",
                self.prefix
            );
        }
    }
}
