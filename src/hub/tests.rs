//! The hub without sockets: members are sessions whose outboxes the tests
//! read directly.

use super::*;
use crate::protocol::{ClientCommand, Departure, DropReason, ErrorCode, ServerEvent};

fn hub() -> Hub {
    Hub::new(HubConfig {
        filter: WordFilter::new(vec!["sb=alexsb".parse().unwrap()]),
        ..HubConfig::default()
    })
}

/// Everything queued for `session` right now.
fn drain(session: &mut Membership) -> Vec<ServerEvent> {
    std::iter::from_fn(|| session.outbox.try_recv())
        .map(|outgoing| outgoing.event().clone())
        .collect()
}

/// A member whose rooms have been told it came (as its door does once the
/// arrival grace is over).
fn arrived(hub: &Hub, door: DoorKind) -> Membership {
    let member = hub.connect(door, None).unwrap();
    hub.arrive(member.id);
    member
}

fn nick(name: &str) -> ClientCommand {
    ClientCommand::Nick { nick: name.into() }
}

fn say(text: &str) -> ClientCommand {
    ClientCommand::Say {
        text: text.into(),
        room: None,
    }
}

#[test]
fn a_member_is_welcomed_and_announced_once_it_arrives() {
    let hub = hub();
    let mut first = arrived(&hub, DoorKind::Tcp);
    let mut second = hub.connect(DoorKind::Udp, None).unwrap();
    assert!(matches!(
        &drain(&mut second)[..],
        [ServerEvent::Welcome { nick, members, .. }] if nick == "guest-2" && members.len() == 2
    ));
    drain(&mut first);
    // Not announced until its door says the grace is over...
    assert!(drain(&mut first).is_empty());
    hub.arrive(second.id);
    assert!(
        matches!(&drain(&mut first)[..], [ServerEvent::Join { nick, .. }] if nick == "guest-2")
    );
    // ...and only once.
    hub.arrive(second.id);
    hub.handle(second.id, say("hi"));
    assert!(matches!(&drain(&mut first)[..], [ServerEvent::Message(_)]));
}

#[test]
fn a_first_nick_is_the_name_the_room_hears_and_nothing_else() {
    let hub = hub();
    let mut watcher = arrived(&hub, DoorKind::Tcp);
    let mut alice = hub.connect(DoorKind::Tcp, None).unwrap();
    drain(&mut watcher);
    drain(&mut alice);
    hub.handle(alice.id, nick("alice"));
    assert!(matches!(
        &drain(&mut alice)[..],
        [ServerEvent::Nick { new, .. }] if new == "alice"
    ));
    assert!(matches!(
        &drain(&mut watcher)[..],
        [ServerEvent::Join { nick, .. }] if nick == "alice"
    ));
    hub.arrive(alice.id);
    assert!(drain(&mut watcher).is_empty());
    // A later rename is news to the room.
    hub.handle(alice.id, nick("alicia"));
    assert!(matches!(
        &drain(&mut watcher)[..],
        [ServerEvent::Nick { .. }]
    ));
}

#[test]
fn a_taken_first_nick_leaves_the_newcomer_unannounced() {
    let hub = hub();
    let mut alice = arrived(&hub, DoorKind::Tcp);
    hub.handle(alice.id, nick("alice"));
    let mut late = hub.connect(DoorKind::Tcp, None).unwrap();
    drain(&mut alice);
    drain(&mut late);
    hub.handle(late.id, nick("Alice"));
    assert!(matches!(
        &drain(&mut late)[..],
        [ServerEvent::Error {
            code: ErrorCode::NickInUse,
            ..
        }]
    ));
    assert!(drain(&mut alice).is_empty());
    // It goes without a word to the room: nobody was told it came.
    hub.handle(late.id, ClientCommand::Quit { reason: None });
    assert!(drain(&mut alice).is_empty());
    // Neither is a newcomer that is lost before its grace is over.
    let lost = hub.connect(DoorKind::Tcp, None).unwrap();
    hub.disconnect(lost.id, Departure::Lost);
    assert!(drain(&mut alice).is_empty());
}

#[test]
fn messages_are_filtered_and_shared_not_copied() {
    let hub = hub();
    let mut alice = arrived(&hub, DoorKind::Tcp);
    let mut bob = arrived(&hub, DoorKind::Web);
    drain(&mut alice);
    drain(&mut bob);
    hub.handle(alice.id, say("you sb"));
    let to_alice = alice.outbox.try_recv().unwrap();
    let to_bob = bob.outbox.try_recv().unwrap();
    assert!(
        Arc::ptr_eq(&to_alice, &to_bob),
        "one event for all recipients"
    );
    assert!(
        matches!(to_bob.event(), ServerEvent::Message(message) if message.text == "you alexsb")
    );
}

#[test]
fn a_member_behind_holds_whoever_talks_into_its_room() {
    let hub = Hub::new(HubConfig {
        sendq: 16 * 1024,
        ..HubConfig::default()
    });
    let mut talker = arrived(&hub, DoorKind::Tcp);
    let mut reader = arrived(&hub, DoorKind::Tcp);
    drain(&mut reader);
    // Past a sixteenth of its sendq (1 KiB), the reader is congested, and
    // the next message said into its room holds the talker.
    let mut said = 0;
    while !talker.outbox.is_held() {
        hub.handle(talker.id, say(&format!("line {said} {}", "x".repeat(80))));
        drain(&mut talker);
        said += 1;
        assert!(said < 20, "never held");
    }
    assert!(reader.outbox.is_congested());
    assert!(reader.outbox.backlog() > 1024);
    // The reader catches up: the talker may go on; nobody was dropped.
    assert_eq!(drain(&mut reader).len(), said);
    assert!(!talker.outbox.is_held());
    assert_eq!(hub.member_count(), 2);
}

#[test]
fn a_member_past_its_sendq_is_dropped_alone() {
    let hub = Hub::new(HubConfig {
        sendq: 1024,
        ..HubConfig::default()
    });
    let mut talker = arrived(&hub, DoorKind::Tcp);
    let mut stuck = arrived(&hub, DoorKind::Tcp);
    // The talker ignores its hold (a door would not read it meanwhile).
    for index in 0..30 {
        hub.handle(talker.id, say(&format!("line {index} {}", "x".repeat(40))));
        drain(&mut talker);
    }
    assert_eq!(stuck.dropped.try_recv().unwrap(), DropReason::SendqExceeded);
    assert_eq!(hub.member_count(), 1);
    hub.handle(talker.id, ClientCommand::Who { room: None });
    assert!(matches!(
        drain(&mut talker).last(),
        Some(ServerEvent::Members { nicks, .. }) if nicks == &["guest-1"]
    ));
}

#[test]
fn nicknames_are_unique_regardless_of_case() {
    let hub = hub();
    let mut alice = arrived(&hub, DoorKind::Tcp);
    let mut bob = arrived(&hub, DoorKind::Tcp);
    hub.handle(
        alice.id,
        ClientCommand::Nick {
            nick: "Alice".into(),
        },
    );
    hub.handle(
        bob.id,
        ClientCommand::Nick {
            nick: "aLICE".into(),
        },
    );
    drain(&mut alice);
    assert!(matches!(
        drain(&mut bob).last(),
        Some(ServerEvent::Error {
            code: ErrorCode::NickInUse,
            ..
        })
    ));
    // Changing only the case of your own nickname is allowed.
    hub.handle(
        alice.id,
        ClientCommand::Nick {
            nick: "ALICE".into(),
        },
    );
    assert!(
        matches!(drain(&mut alice).last(), Some(ServerEvent::Nick { new, .. }) if new == "ALICE")
    );
}

#[test]
fn kick_and_shutdown_tell_the_door() {
    let hub = hub();
    let mut victim = arrived(&hub, DoorKind::Tcp);
    let mut other = arrived(&hub, DoorKind::Tcp);
    hub.kick("guest-1", Some("spam")).unwrap();
    assert_eq!(
        victim.dropped.try_recv().unwrap(),
        DropReason::Kicked {
            reason: Some("spam".into())
        }
    );
    assert!(matches!(
        drain(&mut other).last(),
        Some(ServerEvent::Leave { detail: Some(detail), .. }) if detail == "kicked: spam"
    ));
    assert!(hub.kick("nobody", None).is_err());
    hub.shutdown();
    assert_eq!(other.dropped.try_recv().unwrap(), DropReason::ShuttingDown);
    assert_eq!(
        hub.connect(DoorKind::Tcp, None).unwrap_err(),
        Refusal::ShuttingDown
    );
}

#[test]
fn limits_count_per_address_and_free_on_leave() {
    let hub = Hub::new(HubConfig {
        max_per_ip: 1,
        ..HubConfig::default()
    });
    let ip = Some("10.0.0.1".parse().unwrap());
    let first = hub.connect(DoorKind::Tcp, ip).unwrap();
    assert_eq!(
        hub.connect(DoorKind::Tcp, ip).unwrap_err(),
        Refusal::TooManyFromAddress(1)
    );
    hub.connect(DoorKind::Tcp, Some("10.0.0.2".parse().unwrap()))
        .unwrap();
    hub.disconnect(first.id, Departure::Lost);
    hub.connect(DoorKind::Tcp, ip).unwrap();
}

#[test]
fn a_big_room_sends_counts_instead_of_lists_and_stops_announcing() {
    let hub = Hub::new(HubConfig {
        big_room: 2,
        ..HubConfig::default()
    });
    let mut first = arrived(&hub, DoorKind::Tcp);
    let mut second = arrived(&hub, DoorKind::Tcp);
    drain(&mut first);
    assert!(matches!(
        &drain(&mut second)[..],
        [ServerEvent::Welcome { members, count: 2, .. }] if members.len() == 2
    ));

    // The third member makes the room big: a count, and no join notices.
    let mut third = arrived(&hub, DoorKind::Tcp);
    assert!(matches!(
        &drain(&mut third)[..],
        [ServerEvent::Welcome { members, count: 3, .. }] if members.is_empty()
    ));
    assert!(drain(&mut first).is_empty());
    assert!(drain(&mut second).is_empty());

    // Asking still lists everyone.
    hub.handle(third.id, ClientCommand::Who { room: None });
    assert!(matches!(
        &drain(&mut third)[..],
        [ServerEvent::Members { nicks, count: 3, .. }] if nicks.len() == 3
    ));

    // Leaving a big room is not announced either; once it is small again,
    // leaves are.
    hub.disconnect(third.id, Departure::Quit { reason: None });
    assert!(drain(&mut first).is_empty());
    hub.disconnect(second.id, Departure::Quit { reason: None });
    assert!(matches!(
        &drain(&mut first)[..],
        [ServerEvent::Leave { nick, .. }] if nick == "guest-2"
    ));
}

#[test]
fn joining_a_big_room_confirms_to_the_joiner_only() {
    let hub = Hub::new(HubConfig {
        big_room: 1,
        ..HubConfig::default()
    });
    let mut first = arrived(&hub, DoorKind::Tcp);
    let mut second = arrived(&hub, DoorKind::Tcp);
    hub.handle(first.id, ClientCommand::Join { room: "big".into() });
    drain(&mut first);
    drain(&mut second);
    hub.handle(second.id, ClientCommand::Join { room: "big".into() });
    assert!(matches!(
        &drain(&mut second)[..],
        [ServerEvent::Join { nick, .. }, ServerEvent::Members { nicks, count: 2, .. }]
            if nick == "guest-2" && nicks.is_empty()
    ));
    assert!(drain(&mut first).is_empty());
}

/// A bus that holds what it is given until the test lets it through, as a
/// cluster's would while the message crosses the network.
#[derive(Debug, Default)]
struct HeldBus {
    hub: std::sync::OnceLock<WeakHub>,
    held: std::sync::Mutex<Vec<crate::protocol::MessageRecord>>,
}

impl Bus for HeldBus {
    fn publish(&self, messages: Vec<crate::protocol::MessageRecord>) {
        self.held.lock().unwrap().extend(messages);
    }

    fn announce(&self, _text: &str) {}
}

impl HeldBus {
    fn release(&self) {
        let messages = std::mem::take(&mut *self.held.lock().unwrap());
        self.hub.get().unwrap().upgrade().unwrap().fan_out(messages);
    }
}

#[test]
fn messages_reach_the_room_only_through_the_bus() {
    let bus = Arc::new(HeldBus::default());
    let handle = bus.clone();
    let hub = Hub::with_bus(HubConfig::default(), move |weak| {
        handle.hub.set(weak).unwrap();
        handle
    });
    let mut alice = arrived(&hub, DoorKind::Tcp);
    let mut bob = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    drain(&mut bob);
    hub.handle(alice.id, say("through the bus"));
    assert!(
        drain(&mut bob).is_empty(),
        "nothing before the bus carries it"
    );
    bus.release();
    assert!(matches!(
        &drain(&mut bob)[..],
        [ServerEvent::Message(message)] if message.text == "through the bus"
    ));
}

#[test]
fn message_times_come_from_the_hubs_clock() {
    let clock = Arc::new(clock::ManualClock::at(1_700_000_000_000));
    let hub = Hub::new(HubConfig {
        clock: clock.clone(),
        ..HubConfig::default()
    });
    let mut alice = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    hub.handle(alice.id, say("first"));
    clock.set(1_700_000_060_000);
    hub.handle(alice.id, say("a minute later"));
    let times: Vec<u64> = drain(&mut alice)
        .into_iter()
        .filter_map(|event| match event {
            ServerEvent::Message(message) => Some(message.time),
            _ => None,
        })
        .collect();
    assert_eq!(times, vec![1_700_000_000_000, 1_700_000_060_000]);
}

/// The texts of the room messages in `delivery`.
fn texts(delivery: &Delivery) -> Vec<String> {
    delivery
        .events()
        .iter()
        .filter_map(|event| match event.event() {
            ServerEvent::Message(message) => Some(message.text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_commit_reaches_each_member_as_one_run_per_room() {
    use futures_util::FutureExt;
    let hub = hub();
    let mut alice = arrived(&hub, DoorKind::Tcp);
    let mut bob = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    drain(&mut bob);
    let record = |id: u64, room: &str, text: &str| MessageRecord {
        id,
        room: room.into(),
        from: "guest-1".into(),
        time: id,
        text: text.into(),
        action: false,
        notice: false,
        ticket: None,
    };
    let lobby = HubConfig::default().default_room;
    hub.fan_out(vec![
        record(1, &lobby, "one"),
        record(2, &lobby, "two"),
        record(3, "elsewhere", "not for them"),
        record(4, &lobby, "three"),
    ]);
    for member in [&alice, &bob] {
        let mut batch = Vec::new();
        let taken = member
            .outbox
            .recv_many(&mut batch, usize::MAX)
            .now_or_never();
        assert_eq!(
            taken,
            Some(2),
            "a run before the other room's message, one after"
        );
        assert_eq!(texts(&batch[0]), ["one", "two"]);
        assert_eq!(texts(&batch[1]), ["three"]);
    }
    assert_eq!(hub.metrics().messages_out.get(), 6);
}

#[tokio::test]
async fn a_batching_hub_fans_out_what_was_said_together() {
    let hub = Hub::batching(HubConfig::default());
    let mut alice = arrived(&hub, DoorKind::Tcp);
    let mut bob = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    drain(&mut bob);
    // Said back to back: the publishing task has not run in between.
    hub.handle(alice.id, say("first"));
    hub.handle(bob.id, say("second"));
    assert!(drain(&mut bob).is_empty(), "not yet fanned out");
    let mut batch = Vec::new();
    assert_eq!(bob.outbox.recv_many(&mut batch, usize::MAX).await, 1);
    assert_eq!(texts(&batch[0]), ["first", "second"]);
}

#[test]
fn help_lists_the_json_switch_only_where_it_works() {
    let hub = hub();
    for (door, lists_json) in [
        (DoorKind::Tcp, true),
        (DoorKind::Web, true),
        (DoorKind::Udp, false),
    ] {
        let mut member = arrived(&hub, door);
        drain(&mut member);
        hub.handle(member.id, ClientCommand::Help);
        let [ServerEvent::Notice { text }] = &drain(&mut member)[..] else {
            panic!("help is one notice");
        };
        assert_eq!(text.contains("/json"), lists_json, "{door:?}");
        assert!(text.ends_with("leave (so do the lines byebye and bye)"));
    }
}

#[test]
fn a_newcomer_that_goes_straight_to_another_room_is_never_seen_in_the_default_one() {
    let hub = hub();
    let mut lobby = arrived(&hub, DoorKind::Tcp);
    let mut elsewhere = arrived(&hub, DoorKind::Tcp);
    hub.handle(
        elsewhere.id,
        ClientCommand::Join {
            room: "~load".into(),
        },
    );
    let mut loader = hub.connect(DoorKind::Tcp, None).unwrap();
    drain(&mut lobby);
    drain(&mut elsewhere);
    drain(&mut loader);
    hub.handle(
        loader.id,
        ClientCommand::Join {
            room: "~load".into(),
        },
    );
    hub.handle(
        loader.id,
        ClientCommand::Part {
            room: Some("lobby".into()),
            reason: None,
        },
    );
    hub.handle(loader.id, say("in the load room"));
    hub.arrive(loader.id);
    // The load room heard the join and the message; the lobby nothing.
    assert!(matches!(
        &drain(&mut elsewhere)[..],
        [ServerEvent::Join { room, .. }, ServerEvent::Message(_)] if room == "~load"
    ));
    assert!(drain(&mut lobby).is_empty());
    // The member itself heard its own leave of the lobby.
    assert!(drain(&mut loader)
        .iter()
        .any(|event| matches!(event, ServerEvent::Leave { room, .. } if room == "lobby")));
    hub.disconnect(loader.id, Departure::Lost);
    assert!(drain(&mut lobby).is_empty());
    assert!(matches!(
        &drain(&mut elsewhere)[..],
        [ServerEvent::Leave { .. }]
    ));
}

fn oper(name: &str, password: &str) -> ClientCommand {
    ClientCommand::Oper {
        name: name.into(),
        password: crate::protocol::Password(password.into()),
    }
}

fn error_code(events: &[ServerEvent]) -> Option<ErrorCode> {
    events.iter().find_map(|event| match event {
        ServerEvent::Error { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn oper_on_a_server_without_operators_is_refused_at_once() {
    let hub = hub();
    let mut alice = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    let handled = hub.handle(alice.id, oper("admin", "sesame"));
    assert!(!matches!(handled.pending, Some(Pending::Oper)));
    assert_eq!(error_code(&drain(&mut alice)), Some(ErrorCode::NoOperators));
}

#[test]
fn a_wrong_operator_password_makes_its_address_wait() {
    let hash = operators::hash_password("sesame").unwrap();
    let admin = format!("admin:{hash}").parse().unwrap();
    let clock = Arc::new(clock::ManualClock::at(1_000_000));
    let hub = Hub::new(HubConfig {
        operators: operators::Operators::new(vec![admin]).unwrap(),
        clock: clock.clone(),
        ..HubConfig::default()
    });
    let here: IpAddr = "127.0.0.7".parse().unwrap();
    let elsewhere: IpAddr = "127.0.0.8".parse().unwrap();
    let mut guesser = hub.connect(DoorKind::Tcp, Some(here)).unwrap();
    let mut neighbour = hub.connect(DoorKind::Tcp, Some(here)).unwrap();
    let mut stranger = hub.connect(DoorKind::Tcp, Some(elsewhere)).unwrap();
    for member in [&mut guesser, &mut neighbour, &mut stranger] {
        drain(member);
    }
    // Without a runtime the check runs at once, on this thread.
    hub.handle(guesser.id, oper("admin", "guess"));
    assert_eq!(
        error_code(&drain(&mut guesser)),
        Some(ErrorCode::BadPassword)
    );
    // The address waits, whoever of it asks, even with the right password...
    hub.handle(guesser.id, oper("admin", "sesame"));
    assert_eq!(error_code(&drain(&mut guesser)), Some(ErrorCode::TryAgain));
    hub.handle(neighbour.id, oper("admin", "sesame"));
    assert_eq!(
        error_code(&drain(&mut neighbour)),
        Some(ErrorCode::TryAgain)
    );
    // ...while another address does not.
    hub.handle(stranger.id, oper("root", "sesame"));
    assert_eq!(
        error_code(&drain(&mut stranger)),
        Some(ErrorCode::BadPassword)
    );
    clock.set(1_000_000 + operators::DEFAULT_OPER_RETRY_MS - 1);
    hub.handle(guesser.id, oper("admin", "sesame"));
    assert_eq!(error_code(&drain(&mut guesser)), Some(ErrorCode::TryAgain));
    clock.set(1_000_000 + operators::DEFAULT_OPER_RETRY_MS);
    hub.handle(guesser.id, oper("admin", "sesame"));
    assert!(matches!(
        &drain(&mut guesser)[..],
        [ServerEvent::Operator { name: Some(name) }] if name == "admin"
    ));
    // A right password leaves no wait behind.
    hub.handle(neighbour.id, oper("admin", "sesame"));
    assert!(matches!(
        drain(&mut neighbour).last(),
        Some(ServerEvent::Operator { .. })
    ));
}

#[test]
fn an_oper_from_a_newcomer_announces_it_first() {
    let hash = operators::hash_password("sesame").unwrap();
    let admin = format!("admin:{hash}").parse().unwrap();
    let hub = Hub::new(HubConfig {
        operators: operators::Operators::new(vec![admin]).unwrap(),
        ..HubConfig::default()
    });
    let mut watcher = arrived(&hub, DoorKind::Tcp);
    let mut newcomer = hub.connect(DoorKind::Tcp, None).unwrap();
    drain(&mut watcher);
    drain(&mut newcomer);
    hub.handle(newcomer.id, oper("admin", "sesame"));
    assert!(matches!(
        &drain(&mut watcher)[..],
        [ServerEvent::Join { .. }]
    ));
    assert!(matches!(
        &drain(&mut newcomer)[..],
        [ServerEvent::Operator { .. }]
    ));
    // One that has gone is told to quit, and nothing is checked.
    hub.disconnect(newcomer.id, Departure::Lost);
    assert!(matches!(
        hub.handle(newcomer.id, oper("admin", "sesame")).flow,
        Flow::Quit
    ));
}

#[test]
fn invitations_lapse_when_the_invited_leave_and_past_the_cap() {
    let hub = hub();
    let mut host = arrived(&hub, DoorKind::Tcp);
    hub.handle(host.id, ClientCommand::Join { room: "den".into() });
    let guests: Vec<_> = (0..rooms::MAX_INVITED + 1)
        .map(|_| arrived(&hub, DoorKind::Tcp))
        .collect();
    for guest in &guests {
        let nick = hub.lock().members[&guest.id].nick.clone();
        hub.handle(host.id, ClientCommand::Invite { nick, room: None });
    }
    drain(&mut host);
    let invited = |hub: &Hub| hub.lock().rooms["den"].invited.clone();
    // The first invitation lapsed to make room for the last.
    let listed = invited(&hub);
    assert_eq!(listed.len(), rooms::MAX_INVITED);
    assert!(!listed.contains(&guests[0].id));
    assert!(hub.lock().members[&guests[0].id].invited_to.is_empty());
    // One who leaves the server is struck off.
    hub.disconnect(guests[1].id, Departure::Lost);
    assert!(!invited(&hub).contains(&guests[1].id));
    assert_eq!(invited(&hub).len(), rooms::MAX_INVITED - 1);
}

#[test]
fn a_cluster_node_sends_what_is_said_to_its_log_and_tells_the_sender_when_the_link_is_behind() {
    let hub = hub();
    let (outlet, ends) = cluster::ClusterOutlet::new(1, "n1", "n1/1");
    let mut log = ends.messages;
    hub.send_to_cluster(outlet);
    let mut alice = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    // The message waits for the log: nobody sees it yet, the sender waits
    // for its ticket.
    let handled = hub.handle(alice.id, say("first"));
    let Some(Pending::Echo(ticket)) = handled.pending else {
        panic!("{handled:?}");
    };
    assert!(ticket >= TICKETS_FROM);
    assert!(drain(&mut alice).is_empty());
    let queued = log.try_recv().unwrap();
    assert_eq!(
        (queued.record.id, queued.record.text.as_str()),
        (ticket, "first")
    );
    // The queue holds one: a second message waits, a third is refused.
    hub.handle(alice.id, say("second"));
    let refused = hub.handle(alice.id, say("third"));
    assert_eq!(refused.pending, None);
    assert_eq!(error_code(&drain(&mut alice)), Some(ErrorCode::Unavailable));
    assert_eq!(hub.metrics().cluster_refused.get(), 1);
    // Back from the log with its id, and its ticket: the echo awaited.
    let mut back = queued;
    back.record.ticket = Some(ticket);
    back.record.id = 7;
    hub.take_from_cluster(vec![back.clone()]);
    let events = drain(&mut alice);
    assert!(matches!(&events[..], [ServerEvent::Message(m)] if m.id == 7));
    assert!(Pending::Echo(ticket).is_met_by(&events[0]));
    // The log bringing it again fans out nothing twice.
    hub.take_from_cluster(vec![back]);
    assert!(drain(&mut alice).is_empty());
}

#[test]
fn in_a_cluster_a_nick_is_a_members_only_once_the_cluster_grants_it() {
    use cluster::{Claimed, ClusterRequest};
    let hub = hub();
    let (outlet, ends) = cluster::ClusterOutlet::new(8, "n1", "n1/1");
    let mut asked = ends.nicks;
    hub.send_to_cluster(outlet);
    let mut alice = arrived(&hub, DoorKind::Tcp);
    // A guest is named after its node, and its name is claimed too.
    let guest = drain(&mut alice)
        .iter()
        .find_map(|event| match event {
            ServerEvent::Welcome { nick, .. } => Some(nick.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(guest, "guest-n1-1");
    let Ok(ClusterRequest::Claim { forced: true, .. }) = asked.try_recv() else {
        panic!("the guest's name is claimed");
    };
    // `/nick alice` waits for the cluster.
    let handled = hub.handle(alice.id, nick("alice"));
    let alice_key = crate::protocol::text::nick_key("alice");
    assert_eq!(handled.pending, Some(Pending::Nick(alice_key.clone())));
    assert!(drain(&mut alice).is_empty());
    // Arriving, it was shown to the other nodes (under its guest name).
    assert!(matches!(asked.try_recv(), Ok(ClusterRequest::Show { .. })));
    let claim = asked.try_recv().unwrap();
    assert!(matches!(&claim, ClusterRequest::Claim { nick, forced: false, .. } if nick == "alice"));
    // Taken elsewhere: refused, nothing changes.
    hub.nick_claimed(claim.clone(), Claimed::Taken);
    let events = drain(&mut alice);
    assert!(Pending::Nick(alice_key.clone()).is_met_by(&events[0]));
    assert_eq!(error_code(&events), Some(ErrorCode::NickInUse));
    // Granted: renamed, and the guest name given back.
    hub.nick_claimed(claim, Claimed::Granted);
    let events = drain(&mut alice);
    assert!(matches!(&events[..], [ServerEvent::Nick { new, .. }] if new == "alice"));
    assert!(Pending::Nick(alice_key.clone()).is_met_by(&events[0]));
    // Someone else's rename is not the answer awaited.
    let other = ServerEvent::Nick {
        old: "bob".into(),
        new: "robert".into(),
    };
    assert!(!Pending::Nick(alice_key).is_met_by(&other));
    // Shown to the other nodes under its new name, then the old let go.
    assert!(matches!(
        asked.try_recv().unwrap(),
        ClusterRequest::Show { presence, .. } if presence.nick == "alice"
    ));
    assert_eq!(
        asked.try_recv().unwrap(),
        ClusterRequest::Release {
            key: crate::protocol::text::nick_key("guest-n1-1")
        }
    );
    // Lost to another node later (its claim lapsed): renamed to a guest,
    // whose name is claimed in turn.
    hub.nick_lost(&crate::protocol::text::nick_key("alice"));
    assert!(matches!(
        &drain(&mut alice)[..],
        [ServerEvent::Nick { old, new }] if old == "alice" && new.starts_with("guest-n1-")
    ));
    // Shown first (under a name not yet held, so the link ignores it),
    // then claimed with the same presence.
    assert!(matches!(
        asked.try_recv().unwrap(),
        ClusterRequest::Show { .. }
    ));
    assert!(matches!(
        asked.try_recv().unwrap(),
        ClusterRequest::Claim { forced: true, .. }
    ));
}

/// `hub` as cluster node n1, with one member here, told all so far.
fn node_with_a_member(hub: Hub) -> (Hub, Membership) {
    let (outlet, _ends) = cluster::ClusterOutlet::new(8, "n1", "n1/1");
    hub.send_to_cluster(outlet);
    let mut alice = arrived(&hub, DoorKind::Tcp);
    drain(&mut alice);
    (hub, alice)
}

/// Node n2's member `member` seen in the default room as `nick`, in its
/// entry's `version`.
fn seen_in_lobby(hub: &Hub, member: u64, version: u64, nick: &str) {
    let key = crate::protocol::text::nick_key(nick);
    hub.remote_seen(
        key,
        remote_member("n2/1", member, version, nick, &[DEFAULT_ROOM]),
    );
}

/// Another node's member, as the directory shows it.
fn remote_member(
    origin: &str,
    member: u64,
    version: u64,
    nick: &str,
    rooms: &[&str],
) -> cluster::RemoteMember {
    cluster::RemoteMember {
        origin: origin.into(),
        member,
        version,
        presence: cluster::Presence {
            nick: nick.into(),
            door: "tcp".into(),
            rooms: rooms.iter().map(|room| room.to_string()).collect(),
            away: None,
            invisible: false,
        },
    }
}

#[test]
fn the_directory_tells_a_rename_once_and_a_stale_entry_changes_nothing() {
    let (hub, mut alice) = node_with_a_member(hub());
    let key = crate::protocol::text::nick_key;
    seen_in_lobby(&hub, 3, 1, "bob");
    assert!(matches!(&drain(&mut alice)[..], [ServerEvent::Join { nick, .. }] if nick == "bob"));
    // Renamed: its new key's entry comes first, then its old key's last
    // renewal (written before its node freed it), then the old key's end.
    seen_in_lobby(&hub, 3, 2, "rob");
    seen_in_lobby(&hub, 3, 1, "bob");
    hub.remote_gone(&key("bob"), false);
    assert!(matches!(
        &drain(&mut alice)[..],
        [ServerEvent::Nick { old, new }] if old == "bob" && new == "rob"
    ));
    assert_eq!(hub.lock().nicks_in(DEFAULT_ROOM).len(), 2);
}

#[test]
fn a_lapsed_nick_taken_by_someone_else_is_one_leaving_and_another_joining() {
    let (hub, mut alice) = node_with_a_member(hub());
    let key = crate::protocol::text::nick_key("bob");
    hub.remote_seen(
        key.clone(),
        remote_member("n2/1", 3, 5, "bob", &[DEFAULT_ROOM]),
    );
    drain(&mut alice);
    // Node n2's claim lapsed, and a member of n3 took the nick.
    hub.remote_seen(key, remote_member("n3/1", 8, 1, "Bob", &[DEFAULT_ROOM]));
    let events = drain(&mut alice);
    assert!(
        matches!(
            &events[..],
            [
                ServerEvent::Leave { nick: gone, reason: LeaveReason::Lost, .. },
                ServerEvent::Join { nick: came, .. },
            ] if gone == "bob" && came == "Bob"
        ),
        "{events:?}"
    );
    assert_eq!(hub.lock().nicks_in(DEFAULT_ROOM).len(), 2);
}

#[test]
fn a_big_room_hears_nothing_of_other_nodes_members_coming_and_going() {
    let (hub, mut alice) = node_with_a_member(Hub::new(HubConfig {
        big_room: 2,
        ..HubConfig::default()
    }));
    let key = crate::protocol::text::nick_key;
    // Two members: not big yet, so the second is announced.
    seen_in_lobby(&hub, 3, 1, "bob");
    assert!(matches!(&drain(&mut alice)[..], [ServerEvent::Join { nick, .. }] if nick == "bob"));
    // A third makes it big: it comes, and goes, unannounced.
    seen_in_lobby(&hub, 4, 1, "cat");
    hub.remote_gone(&key("cat"), false);
    assert!(drain(&mut alice).is_empty());
    assert_eq!(hub.lock().room_size(DEFAULT_ROOM), 2);
    // Back to two: bob's going is told.
    hub.remote_gone(&key("bob"), false);
    assert!(matches!(&drain(&mut alice)[..], [ServerEvent::Leave { nick, .. }] if nick == "bob"));
}

#[test]
fn another_nodes_invisible_member_is_hidden_from_strangers_masks() {
    let (hub, mut alice) = node_with_a_member(hub());
    let mut ghost = remote_member("n2/1", 3, 1, "ghost", &["attic"]);
    ghost.presence.invisible = true;
    hub.remote_seen(crate::protocol::text::nick_key("ghost"), ghost);
    let found = |alice: &mut Membership, target: &str| {
        hub.handle(
            alice.id,
            ClientCommand::Lookup {
                targets: vec![target.into()],
            },
        );
        let events = drain(alice);
        match &events[..] {
            [ServerEvent::Found { people, .. }] => people.clone(),
            other => panic!("{other:?}"),
        }
    };
    // A stranger's mask sees it hidden (the doors leave it out); its nick
    // finds it.
    let by_mask = found(&mut alice, "gh*");
    assert!(by_mask.len() == 1 && by_mask[0].hidden, "{by_mask:?}");
    assert_eq!(found(&mut alice, "ghost").len(), 1);
    // Sharing its room, one sees it.
    hub.handle(
        alice.id,
        ClientCommand::Join {
            room: "attic".into(),
        },
    );
    drain(&mut alice);
    assert!(!found(&mut alice, "gh*")[0].hidden);
}

#[test]
fn going_invisible_is_shown_to_the_other_nodes() {
    let hub = hub();
    let (outlet, mut ends) = cluster::ClusterOutlet::new(8, "n1", "n1/1");
    hub.send_to_cluster(outlet);
    let alice = arrived(&hub, DoorKind::Tcp);
    while ends.nicks.try_recv().is_ok() {}
    hub.handle(alice.id, ClientCommand::Invisible { on: true });
    assert!(matches!(
        ends.nicks.try_recv(),
        Ok(cluster::ClusterRequest::Show { presence, .. }) if presence.invisible
    ));
}

/// The change next asked of the cluster's rooms bucket.
fn room_change(ends: &mut cluster::ClusterEnds) -> cluster::RoomRequest {
    ends.rooms.try_recv().expect("a room change was asked")
}

#[test]
fn a_clusters_rooms_change_by_their_entry_and_every_change_is_told_once() {
    let clock = Arc::new(clock::ManualClock::at(1_000_000));
    let hub = Hub::new(HubConfig {
        clock: clock.clone(),
        ..HubConfig::default()
    });
    let (outlet, mut ends) = cluster::ClusterOutlet::new(8, "n1", "n1/1");
    hub.send_to_cluster(outlet);
    let mut alice = arrived(&hub, DoorKind::Tcp);
    hub.handle(alice.id, ClientCommand::Join { room: "lab".into() });
    drain(&mut alice);
    // Nobody anywhere: alice makes the room, asked as a compare-and-set.
    let cluster::RoomRequest::Change { change, .. } = room_change(&mut ends) else {
        panic!("not a change");
    };
    let me = cluster::MemberRef {
        origin: "n1/1".into(),
        member: alice.id.number(),
    };
    assert!(matches!(&change, cluster::RoomChange::Found { by, after: None, .. } if *by == me));
    let mut entry = cluster::RoomEntry::new("lab");
    assert!(entry.apply(None, &change));
    hub.room_entry_seen(1, entry.clone(), true);
    // A topic is asked of the cluster, and told when its entry comes back.
    let topic = ClientCommand::Topic {
        room: None,
        text: Some("plans".into()),
    };
    hub.handle(alice.id, topic);
    assert!(
        drain(&mut alice).is_empty(),
        "told before the cluster has it"
    );
    let cluster::RoomRequest::Change { change, .. } = room_change(&mut ends) else {
        panic!("not a change");
    };
    assert!(entry.apply(Some(1), &change));
    entry.written = 1_000_000;
    hub.room_entry_seen(2, entry.clone(), true);
    hub.room_entry_seen(2, entry.clone(), true);
    let told = drain(&mut alice);
    assert!(
        matches!(&told[..], [ServerEvent::Topic { text: Some(text), changed: true, .. }] if text == "plans"),
        "{told:?}"
    );
    // Leaving, the operator is struck from the entry, and the room,
    // empty everywhere, closed.
    hub.handle(
        alice.id,
        ClientCommand::Part {
            room: None,
            reason: None,
        },
    );
    assert!(matches!(
        room_change(&mut ends),
        cluster::RoomRequest::Change {
            change: cluster::RoomChange::Forget { ranks: true, .. },
            ..
        }
    ));
    assert!(
        matches!(room_change(&mut ends), cluster::RoomRequest::Close { room } if room == "lab")
    );
    // Coming straight back, alice makes it anew (after the close).
    hub.handle(alice.id, ClientCommand::Join { room: "lab".into() });
    assert!(matches!(
        room_change(&mut ends),
        cluster::RoomRequest::Change {
            change: cluster::RoomChange::Found { after: None, .. },
            ..
        }
    ));
}

#[test]
fn an_empty_rooms_entry_left_over_for_a_minute_is_made_anew() {
    for (now, made) in [
        (1_000_001, false),
        (1_000_000 + cluster::LEFT_OVER_MS + 1, true),
    ] {
        let clock = Arc::new(clock::ManualClock::at(now));
        let hub = Hub::new(HubConfig {
            clock,
            ..HubConfig::default()
        });
        let (outlet, mut ends) = cluster::ClusterOutlet::new(8, "n1", "n1/1");
        hub.send_to_cluster(outlet);
        // An entry written at 1_000_000, of a room nobody is in.
        let mut entry = cluster::RoomEntry::new("old");
        entry.ops = vec![cluster::MemberRef {
            origin: "gone/1".into(),
            member: 1,
        }];
        entry.written = 1_000_000;
        hub.room_entry_seen(7, entry, false);
        let alice = arrived(&hub, DoorKind::Tcp);
        hub.handle(alice.id, ClientCommand::Join { room: "old".into() });
        let asked = ends.rooms.try_recv();
        match made {
            true => assert!(
                matches!(
                    &asked,
                    Ok(cluster::RoomRequest::Change {
                        change: cluster::RoomChange::Found { after: Some(7), .. },
                        ..
                    })
                ),
                "{asked:?}"
            ),
            false => assert!(asked.is_err(), "made anew too soon: {asked:?}"),
        }
    }
}
