//! Message ids.
//!
//! An id is one `u64`, unique and increasing in the order messages are
//! committed, and it never repeats across restarts: a node continues after
//! the highest id in its store. Clients de-duplicate and sort by it.
//!
//! The scheme is chosen so that it can hold across several nodes later:
//! the id is a message's position in the log that orders messages. A single
//! node's log is its own counter (here); in a cluster it becomes the
//! sequence number of the shared message log (a JetStream stream over all
//! rooms), which is unique and increasing cluster-wide. What the hub needs
//! of an id, uniqueness and commit order, is the same in both.

/// Where a cluster node's tickets start (see [`crate::hub::cluster`]): far
/// above any id a log hands out, so a ticket is never taken for an id.
pub const TICKETS_FROM: u64 = 1 << 63;

/// Hands out message ids on one node (or, in a cluster, tickets).
#[derive(Debug, Clone)]
pub struct MessageIds {
    next: u64,
}

impl MessageIds {
    /// Ids continuing after `last` (the highest one stored, or 0).
    pub fn after(last: u64) -> Self {
        MessageIds { next: last + 1 }
    }

    /// The next id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_continue_after_the_stored_ones() {
        let mut ids = MessageIds::after(41);
        assert_eq!(ids.next_id(), 42);
        assert_eq!(ids.next_id(), 43);
    }
}
