//! Fan-out: one shared delivery, one offer per recipient, never a wait.

use std::sync::Arc;

use super::outbox::{Delivery, Offered};
use super::state::{Member, State};
use super::{DoorKind, HubConfig, MemberId};
use crate::protocol::text::is_ephemeral;
use crate::protocol::{Departure, DropReason, MessageRecord, Outgoing, ServerEvent};

impl State {
    /// Fans messages out to their rooms (after they are on disk, when
    /// history is kept) and remembers them for newcomers. Each run of
    /// messages to one room is one delivery to each of its members.
    pub(super) fn publish(&mut self, config: &HubConfig, records: Vec<MessageRecord>) {
        let mut records = records.into_iter().peekable();
        while let Some(room) = records.peek().map(|first| first.room.clone()) {
            let mut events = Vec::new();
            let mut outside_echoes = Vec::new();
            // Lookups go up to the last stored message: an ephemeral one
            // may be published ahead of stored ones still being written.
            let stored = !is_ephemeral(&room);
            while let Some(record) = records.next_if(|next| next.room == room) {
                if stored {
                    self.last_published = self.last_published.max(record.id);
                }
                let sender = match self.outside_senders.is_empty() {
                    true => None,
                    false => self
                        .outside_senders
                        .remove(&record.ticket.unwrap_or(record.id)),
                };
                self.remember(config, record.clone());
                let event = Arc::new(Outgoing::new(ServerEvent::Message(record)));
                if let Some(sender) = sender {
                    outside_echoes.push((sender, event.clone()));
                }
                events.push(event);
            }
            self.fan_out(&room, None, events.len(), Delivery::run(events));
            for (sender, event) in outside_echoes {
                let inside = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.members.contains(&sender));
                if self.members.contains_key(&sender) && !inside {
                    self.deliver(sender, event);
                }
            }
        }
    }

    /// Tells every member something.
    pub(super) fn announce(&mut self, text: &str) {
        let event = Arc::new(Outgoing::new(ServerEvent::Notice {
            text: text.to_string(),
        }));
        let ids: Vec<MemberId> = self.members.keys().copied().collect();
        for id in ids {
            self.deliver(id, event.clone());
        }
    }

    /// Removes the members found too slow (or gone) during this call.
    /// Removing one tells its rooms, which can find more; loop until quiet.
    pub(super) fn settle(&mut self, config: &HubConfig) {
        while let Some((id, departure)) = self.overflowed.pop() {
            // A closed outbox means the door is gone: no one to tell.
            let tell = departure != Departure::Lost;
            self.remove_member(config, id, departure, tell);
        }
    }

    pub(super) fn deliver_event(&mut self, id: MemberId, event: ServerEvent) {
        self.deliver(id, Arc::new(Outgoing::new(event)));
    }

    /// Queues an event for one member without waiting.
    pub(super) fn deliver(&mut self, id: MemberId, event: Arc<Outgoing>) {
        if let Some(member) = self.members.get(&id) {
            // Counted first: whoever reads the event may read the metrics next.
            if matches!(event.event(), ServerEvent::Private { .. }) {
                self.metrics.messages_out.inc();
            }
            offer(id, member, &Delivery::One(event), &mut self.overflowed);
        }
    }

    /// Holds `id` (its door stops reading it) if it talks into `room`
    /// while a member there is congested. The room remembers the congested
    /// member its latest fan-out found; one that has caught up is forgotten.
    pub(super) fn hold_if_congested(&mut self, id: MemberId, room: &str) {
        let Some(room_state) = self.rooms.get_mut(room) else {
            return;
        };
        match &room_state.congested {
            Some(holder) if holder.is_congested() => {
                if let Some(member) = self.members.get(&id) {
                    member.outbox.hold_on(holder);
                    self.metrics.flow_holds.inc();
                }
            }
            Some(_) => room_state.congested = None,
            None => {}
        }
    }

    /// Holds `id` if the member it writes to privately is congested.
    pub(super) fn hold_if_target_congested(&mut self, id: MemberId, target: MemberId) {
        if let (Some(member), Some(target)) = (self.members.get(&id), self.members.get(&target)) {
            if target.outbox.is_congested() {
                member.outbox.hold_on(&target.outbox.holder());
                self.metrics.flow_holds.inc();
            }
        }
    }

    pub(super) fn broadcast(&mut self, room: &str, event: ServerEvent) {
        self.broadcast_except_option(room, None, event);
    }

    pub(super) fn broadcast_except(&mut self, room: &str, except: MemberId, event: ServerEvent) {
        self.broadcast_except_option(room, Some(except), event);
    }

    fn broadcast_except_option(
        &mut self,
        room: &str,
        except: Option<MemberId>,
        event: ServerEvent,
    ) {
        let messages = usize::from(matches!(event, ServerEvent::Message(_)));
        let delivery = Delivery::One(Arc::new(Outgoing::new(event)));
        self.fan_out(room, except, messages, delivery);
    }

    /// Fan-out: one shared delivery (holding `messages` room messages), one
    /// offer per member, no waiting. The first member found congested is
    /// remembered for the room.
    fn fan_out(
        &mut self,
        room: &str,
        except: Option<MemberId>,
        messages: usize,
        delivery: Delivery,
    ) {
        let Some(room_state) = self.rooms.get_mut(room) else {
            return;
        };
        if messages > 0 {
            // Counted first: whoever reads the event may read the metrics next.
            let excepted = except.is_some_and(|id| room_state.members.contains(&id));
            let recipients = room_state.members.len() - usize::from(excepted);
            self.metrics
                .messages_out
                .inc_by((recipients * messages) as u64);
        }
        let mut congested = room_state
            .congested
            .as_ref()
            .is_some_and(|holder| holder.is_congested());
        for id in &room_state.members {
            if Some(*id) == except {
                continue;
            }
            if let Some(member) = self.members.get(id) {
                if offer(*id, member, &delivery, &mut self.overflowed) && !congested {
                    congested = true;
                    room_state.congested = Some(member.outbox.holder());
                }
            }
        }
    }
}

/// Queues `delivery` for `member`; whether the member is now congested.
/// An outbox past its cap marks the member too slow and a closed one marks
/// it gone; `settle` removes both once the fan-out is done.
fn offer(
    id: MemberId,
    member: &Member,
    delivery: &Delivery,
    overflowed: &mut Vec<(MemberId, Departure)>,
) -> bool {
    match member.outbox.offer(delivery) {
        Offered::Queued { congested } => return congested,
        Offered::Overflow if member.door == DoorKind::Console => {
            tracing::warn!("the console is not keeping up; an event was not shown");
        }
        Offered::Overflow => overflowed.push((id, Departure::Dropped(DropReason::SendqExceeded))),
        Offered::Gone => overflowed.push((id, Departure::Lost)),
    }
    false
}
