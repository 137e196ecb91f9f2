//! A member's outbox: the events on their way to its door, counted in
//! bytes, and the flow control that keeps a room's pace to what its
//! readers can read.
//!
//! The hub offers events without waiting ([`Outbox::offer`]); the door
//! takes everything queued at once ([`OutboxReceiver::recv_many`]) and says
//! when it is written ([`OutboxReceiver::release`]). A member whose
//! backlog (queued plus taken, not yet written) passes the pressure mark
//! is *congested*: whoever then talks to it (into one of its rooms, or
//! privately) is *held*, and its door stops reading that sender's socket
//! until the congested member's backlog is down to half the mark, so TCP
//! pushes back on the sender. A member that keeps reading is never
//! dropped; one whose backlog passes the cap is (sendq exceeded), and so is
//! one that holds others back while its connection takes nothing (the
//! session's stall rule).
//!
//! What is queued are [`Delivery`]s: one event, or the run of messages one
//! commit brought to a room, shared by every member of it. A member is
//! offered each run once (a lock, a push, a reference count), not once per
//! message, and woken only when its queue goes from empty to not empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::protocol::Outgoing;

/// A member's sendq, in bytes: past it, the member is dropped.
pub const DEFAULT_SENDQ: usize = 1024 * 1024;

/// The pressure mark for a cap: a sixteenth of it, and at most 64 KiB (a
/// sixteenth of the default megabyte), so a congested reader's backlog,
/// and the latency it adds, stays small however large the cap.
pub fn pressure_mark(cap: usize) -> usize {
    (cap.min(DEFAULT_SENDQ) / 16).max(1)
}

/// What an outbox holds: one event, or several offered together (one
/// commit's messages to a room), shared by all their recipients.
#[derive(Debug, Clone)]
pub enum Delivery {
    One(Arc<Outgoing>),
    Run {
        events: Arc<[Arc<Outgoing>]>,
        /// Their sizes' sum.
        size: usize,
    },
}

impl Delivery {
    /// The events, in order, as one delivery.
    pub fn run(mut events: Vec<Arc<Outgoing>>) -> Delivery {
        if events.len() == 1 {
            // The common case when not busy: no run to allocate.
            return Delivery::One(events.pop().expect("one event"));
        }
        let size = events.iter().map(|event| event.size()).sum();
        Delivery::Run {
            events: events.into(),
            size,
        }
    }

    /// The events, in order.
    pub fn events(&self) -> &[Arc<Outgoing>] {
        match self {
            Delivery::One(event) => std::slice::from_ref(event),
            Delivery::Run { events, .. } => events,
        }
    }

    /// Bytes it counts for in an outbox.
    pub fn size(&self) -> usize {
        match self {
            Delivery::One(event) => event.size(),
            Delivery::Run { size, .. } => *size,
        }
    }
}

/// Most deliveries taken at once, whatever their size: a door's batch
/// vector stays small (a crowd's join notices are one delivery each).
const TAKE_AT_MOST: usize = 128;

/// Queue capacity an empty outbox keeps.
const KEPT_CAPACITY: usize = 16;

/// What [`Outbox::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued. `congested`: the member's backlog is past the pressure mark.
    Queued { congested: bool },
    /// Not queued: it would have taken the backlog past the cap.
    Overflow,
    /// Not queued: the door is gone.
    Gone,
}

/// A new outbox for a member, the hub's end and the door's: `cap` bytes at
/// most, congested past `pressure` bytes.
pub fn outbox(cap: usize, pressure: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            events: VecDeque::new(),
            front_taken: 0,
            queued: 0,
            taken: 0,
            hub_gone: false,
            door_gone: false,
            hold: None,
        }),
        waker: AtomicWaker::new(),
        congestion: Congestion {
            congested: AtomicBool::new(false),
            began: Notify::new(),
            relieved: Notify::new(),
        },
        cap,
        pressure,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver { shared },
    )
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// The door's task, woken when its queue stops being empty.
    waker: AtomicWaker,
    congestion: Congestion,
    cap: usize,
    pressure: usize,
}

#[derive(Debug)]
struct Queue {
    events: VecDeque<Delivery>,
    /// Events of the first delivery already taken one by one (`try_recv`).
    front_taken: usize,
    /// Bytes in `events` (less what `front_taken` took).
    queued: usize,
    /// Bytes the door has taken and not yet written.
    taken: usize,
    /// The hub removed the member: once `events` is empty, nothing more.
    hub_gone: bool,
    /// The door dropped its end.
    door_gone: bool,
    /// Whom this member must wait for before its door reads more from it.
    hold: Option<Arc<Shared>>,
}

impl Queue {
    fn backlog(&self) -> usize {
        self.queued + self.taken
    }
}

/// Whether a member holds others back, and the signal that it no longer does.
#[derive(Debug)]
struct Congestion {
    congested: AtomicBool,
    /// Its own door waits on this while a write waits (the stall rule).
    began: Notify,
    relieved: Notify,
}

impl Congestion {
    /// Sets the flag (under the queue's lock, so a release cannot clear
    /// it behind an offer's back); whether that changed it.
    fn mark(&self, congested: bool) -> bool {
        self.congested.swap(congested, Ordering::AcqRel) != congested
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves counts, never broken
        // invariants worth refusing to deliver over.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_congested(&self) -> bool {
        self.congestion.congested.load(Ordering::Acquire)
    }

    /// No longer congested: everyone held on this member may go on.
    fn relieve(&self) {
        let queue = self.lock();
        let was_congested = self.congestion.mark(false);
        drop(queue);
        if was_congested {
            self.congestion.relieved.notify_waiters();
        }
    }
}

/// The hub's end of a member's outbox.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// A handle on a congested member, to hold a sender on.
#[derive(Debug, Clone)]
pub struct Holder(Arc<Shared>);

impl Holder {
    /// Whether the member still holds others back.
    pub fn is_congested(&self) -> bool {
        self.0.is_congested()
    }
}

impl Outbox {
    /// Queues `delivery` without waiting, unless that would pass the cap.
    pub fn offer(&self, delivery: &Delivery) -> Offered {
        let size = delivery.size();
        let mut queue = self.shared.lock();
        if queue.door_gone {
            return Offered::Gone;
        }
        if queue.backlog() + size > self.shared.cap && queue.backlog() > 0 {
            return Offered::Overflow;
        }
        let was_empty = queue.events.is_empty();
        queue.events.push_back(delivery.clone());
        queue.queued += size;
        let congested = queue.backlog() > self.shared.pressure;
        let began = congested && self.shared.congestion.mark(true);
        drop(queue);
        if began {
            self.shared.congestion.began.notify_waiters();
        }
        if was_empty {
            self.shared.waker.wake();
        }
        Offered::Queued { congested }
    }

    /// A handle to hold others on while this member is congested.
    pub fn holder(&self) -> Holder {
        Holder(self.shared.clone())
    }

    /// Whether this member holds others back.
    pub fn is_congested(&self) -> bool {
        self.shared.is_congested()
    }

    /// Makes this member's door stop reading from it until `holder` is no
    /// longer congested.
    pub fn hold_on(&self, holder: &Holder) {
        // Held on itself too: its door writes before it reads on.
        self.shared.lock().hold = Some(holder.0.clone());
    }
}

impl Drop for Outbox {
    /// The member is out of the hub: what is queued is still delivered,
    /// then the door's end reports the end, and no one waits on it.
    fn drop(&mut self) {
        self.shared.lock().hub_gone = true;
        self.shared.relieve();
        self.shared.waker.wake();
    }
}

/// Nothing queued; `true` if nothing ever will be (the member is removed).
struct Ended(bool);

/// The door's end of a member's outbox.
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl OutboxReceiver {
    /// Waits for deliveries and moves them into `batch`, until they come
    /// to `max_bytes` or more (one at least, 128 at most); 0 once the hub
    /// has removed the member and everything is taken. Their bytes count
    /// until [`OutboxReceiver::release`]. Cancel-safe.
    pub async fn recv_many(&self, batch: &mut Vec<Delivery>, max_bytes: usize) -> usize {
        std::future::poll_fn(|context| self.poll_recv_many(context, batch, max_bytes)).await
    }

    fn poll_recv_many(
        &self,
        context: &mut Context<'_>,
        batch: &mut Vec<Delivery>,
        max_bytes: usize,
    ) -> Poll<usize> {
        if let Some(count) = self.take(batch, max_bytes) {
            return Poll::Ready(count);
        }
        // Registered before looking again, so an offer in between wakes us.
        self.shared.waker.register(context.waker());
        match self.take(batch, max_bytes) {
            Some(count) => Poll::Ready(count),
            None => Poll::Pending,
        }
    }

    /// Takes what is queued; `None` if nothing is and more may come.
    fn take(&self, batch: &mut Vec<Delivery>, max_bytes: usize) -> Option<usize> {
        let mut queue = self.shared.lock();
        if queue.events.is_empty() {
            return queue.hub_gone.then_some(0);
        }
        let mut bytes = 0;
        let mut count = 0;
        if queue.front_taken > 0 {
            // Partly taken one by one: the rest, as a delivery of its own.
            let skip = std::mem::take(&mut queue.front_taken);
            let front = queue.events.pop_front().expect("a front delivery");
            let rest = Delivery::run(front.events()[skip..].to_vec());
            bytes += rest.size();
            count += 1;
            batch.push(rest);
        }
        while bytes < max_bytes.max(1) && count < TAKE_AT_MOST {
            let Some(delivery) = queue.events.pop_front() else {
                break;
            };
            bytes += delivery.size();
            count += 1;
            batch.push(delivery);
        }
        queue.queued -= bytes;
        queue.taken += bytes;
        if queue.events.is_empty() && queue.events.capacity() > KEPT_CAPACITY {
            // Grown by a burst (a crowd's joins): an idle member keeps little.
            queue.events = VecDeque::new();
        }
        Some(count)
    }

    /// One event, if one is queued (or `None` for "nothing now"), without
    /// waiting; its bytes are released at once.
    pub fn try_recv(&mut self) -> Option<Arc<Outgoing>> {
        self.pop_one().ok()
    }

    /// Waits for the next event, released at once (for doors that hand
    /// each event on as it comes); `None` once the member is removed.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Arc<Outgoing>> {
        std::future::poll_fn(|context| {
            if let Poll::Ready(next) = self.poll_one() {
                return Poll::Ready(next);
            }
            // Registered before looking again, so an offer in between wakes us.
            self.shared.waker.register(context.waker());
            self.poll_one()
        })
        .await
    }

    fn poll_one(&self) -> Poll<Option<Arc<Outgoing>>> {
        match self.pop_one() {
            Ok(event) => Poll::Ready(Some(event)),
            Err(Ended(true)) => Poll::Ready(None),
            Err(Ended(false)) => Poll::Pending,
        }
    }

    /// Takes the next event and releases its bytes; if there is none,
    /// whether none will come.
    fn pop_one(&self) -> Result<Arc<Outgoing>, Ended> {
        let mut queue = self.shared.lock();
        let Some(front) = queue.events.front() else {
            return Err(Ended(queue.hub_gone));
        };
        let event = front.events()[queue.front_taken].clone();
        if queue.front_taken + 1 == front.events().len() {
            queue.front_taken = 0;
            queue.events.pop_front();
        } else {
            queue.front_taken += 1;
        }
        queue.queued -= event.size();
        drop(queue);
        // Taken and written at once: what `release` does for a batch.
        self.release();
        Ok(event)
    }

    /// Everything taken so far is written: it no longer counts, and a
    /// member whose backlog is down to half the pressure mark stops
    /// holding others.
    pub fn release(&self) {
        let mut queue = self.shared.lock();
        queue.taken = 0;
        let relieved =
            queue.backlog() <= self.shared.pressure / 2 && self.shared.congestion.mark(false);
        drop(queue);
        if relieved {
            self.shared.congestion.relieved.notify_waiters();
        }
    }

    /// Bytes queued or taken and not yet written.
    pub fn backlog(&self) -> usize {
        self.shared.lock().backlog()
    }

    /// Whether this member holds others back (its backlog is past the
    /// pressure mark and not yet down to half of it).
    pub fn is_congested(&self) -> bool {
        self.shared.is_congested()
    }

    /// Resolves once this member is congested (at once if it is).
    /// Cancel-safe.
    pub async fn until_congested(&self) {
        let congestion = &self.shared.congestion;
        loop {
            let began = congestion.began.notified();
            tokio::pin!(began);
            began.as_mut().enable();
            if self.shared.is_congested() {
                return;
            }
            began.await;
        }
    }

    /// Whether this member must not be read from now: it talked to a
    /// member that is still congested.
    pub fn is_held(&self) -> bool {
        let mut queue = self.shared.lock();
        match &queue.hold {
            Some(holder) if holder.is_congested() => true,
            Some(_) => {
                queue.hold = None;
                false
            }
            None => false,
        }
    }

    /// Resolves once the member this one is held on is no longer congested
    /// (at once if it is not held). Cancel-safe.
    pub async fn until_released(&self) {
        let Some(holder) = self.shared.lock().hold.clone() else {
            return;
        };
        loop {
            let relieved = holder.congestion.relieved.notified();
            tokio::pin!(relieved);
            // Registered before checking, so a relief in between is seen.
            relieved.as_mut().enable();
            if !holder.is_congested() {
                break;
            }
            relieved.await;
        }
        let mut queue = self.shared.lock();
        if queue
            .hold
            .as_ref()
            .is_some_and(|held_on| Arc::ptr_eq(held_on, &holder))
        {
            queue.hold = None;
        }
    }
}

impl Drop for OutboxReceiver {
    /// The door is gone: nothing more is queued, and no one waits on it.
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.door_gone = true;
        queue.events.clear();
        queue.front_taken = 0;
        queue.queued = 0;
        queue.taken = 0;
        queue.hold = None;
        drop(queue);
        self.shared.relieve();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerEvent;

    fn event(text: &str) -> Arc<Outgoing> {
        Arc::new(Outgoing::new(ServerEvent::Notice { text: text.into() }))
    }

    fn notice(text: &str) -> Delivery {
        Delivery::One(event(text))
    }

    #[test]
    fn bytes_count_until_written() {
        let (outbox, receiver) = outbox(1000, pressure_mark(1000));
        let event = notice("hello");
        let size = event.size();
        assert_eq!(outbox.offer(&event), Offered::Queued { congested: false });
        assert_eq!(receiver.backlog(), size);
        let mut batch = Vec::new();
        assert_eq!(receiver.take(&mut batch, 10), Some(1));
        assert_eq!(receiver.backlog(), size, "taken but not written");
        receiver.release();
        assert_eq!(receiver.backlog(), 0);
    }

    #[test]
    fn the_cap_refuses_what_would_pass_it() {
        let event = notice("x");
        let (outbox, _receiver) = outbox(event.size() * 3, pressure_mark(event.size() * 3));
        for _ in 0..3 {
            assert!(matches!(outbox.offer(&event), Offered::Queued { .. }));
        }
        assert_eq!(outbox.offer(&event), Offered::Overflow);
    }

    #[test]
    fn one_event_bigger_than_the_cap_still_goes_to_an_empty_queue() {
        let (outbox, _receiver) = outbox(4, pressure_mark(4));
        assert!(matches!(
            outbox.offer(&notice("long enough")),
            Offered::Queued { .. }
        ));
        assert_eq!(outbox.offer(&notice("more")), Offered::Overflow);
    }

    #[test]
    fn congestion_starts_past_the_mark_and_ends_at_half_of_it() {
        let event = notice("0123456789");
        let size = event.size();
        // A mark of four events.
        let (outbox, receiver) = outbox(size * 4 * 16, pressure_mark(size * 4 * 16));
        let (sender, sender_receiver) = super::outbox(DEFAULT_SENDQ, pressure_mark(DEFAULT_SENDQ));
        for _ in 0..4 {
            assert_eq!(outbox.offer(&event), Offered::Queued { congested: false });
        }
        assert_eq!(outbox.offer(&event), Offered::Queued { congested: true });
        sender.hold_on(&outbox.holder());
        assert!(sender_receiver.is_held());
        let mut batch = Vec::new();
        // Two of five written: three left, over half the mark (two).
        receiver.take(&mut batch, 2 * size);
        receiver.release();
        assert!(receiver.is_congested() && sender_receiver.is_held());
        receiver.take(&mut batch, 1);
        receiver.release();
        assert!(!receiver.is_congested());
        assert!(!sender_receiver.is_held());
    }

    #[tokio::test]
    async fn a_held_sender_is_released_when_the_reader_catches_up_or_leaves() {
        let event = notice("0123456789");
        let (slow, slow_receiver) = outbox(event.size() * 16, pressure_mark(event.size() * 16));
        let (sender, sender_receiver) = outbox(DEFAULT_SENDQ, pressure_mark(DEFAULT_SENDQ));
        slow.offer(&event);
        assert_eq!(slow.offer(&event), Offered::Queued { congested: true });
        sender.hold_on(&slow.holder());
        let waiting = tokio::spawn(async move {
            sender_receiver.until_released().await;
            sender_receiver
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let mut batch = Vec::new();
        slow_receiver.recv_many(&mut batch, DEFAULT_SENDQ).await;
        slow_receiver.release();
        let sender_receiver = waiting.await.unwrap();
        assert!(!sender_receiver.is_held());

        // Held again, then the congested member's door goes away.
        slow.offer(&event);
        slow.offer(&event);
        sender.hold_on(&slow.holder());
        assert!(sender_receiver.is_held());
        drop(slow_receiver);
        sender_receiver.until_released().await;
        assert_eq!(slow.offer(&event), Offered::Gone);
    }

    #[tokio::test]
    async fn a_run_is_offered_once_and_handed_on_whole_or_one_by_one() {
        let (outbox, mut receiver) = outbox(DEFAULT_SENDQ, pressure_mark(DEFAULT_SENDQ));
        let run = Delivery::run(vec![event("one"), event("two"), event("three")]);
        assert_eq!(outbox.offer(&run), Offered::Queued { congested: false });
        assert_eq!(receiver.backlog(), run.size());
        let text = |event: &Outgoing| match event.event() {
            ServerEvent::Notice { text } => text.clone(),
            other => panic!("{other:?}"),
        };
        let first = receiver.try_recv().unwrap();
        assert_eq!(text(&first), "one");
        assert_eq!(receiver.backlog(), run.size() - first.size());
        // The rest, taken in one go, as one delivery.
        let mut batch = Vec::new();
        assert_eq!(receiver.recv_many(&mut batch, 1).await, 1);
        let rest: Vec<_> = batch[0].events().iter().map(|event| text(event)).collect();
        assert_eq!(rest, ["two", "three"]);
        receiver.release();
        assert_eq!(receiver.backlog(), 0);
        outbox.offer(&run);
        drop(outbox);
        let all: Vec<_> = std::iter::from_fn(|| receiver.try_recv()).collect();
        assert_eq!(all.len(), 3);
        assert!(
            receiver.recv().await.is_none(),
            "removed, and everything taken"
        );
    }

    #[tokio::test]
    async fn the_end_comes_after_everything_queued() {
        let (outbox, receiver) = outbox(DEFAULT_SENDQ, pressure_mark(DEFAULT_SENDQ));
        outbox.offer(&notice("last words"));
        drop(outbox);
        let mut batch = Vec::new();
        assert_eq!(receiver.recv_many(&mut batch, 10).await, 1);
        assert_eq!(receiver.recv_many(&mut batch, 10).await, 0);
    }
}
