//! Every session rule, driven with a made-up clock: no sockets, no sleeps.

use std::time::{Duration, Instant};

use super::*;
use crate::hub::{Flow, Handled, Pending};
use crate::protocol::{ErrorCode, MessageRecord};

fn say(text: &str) -> Input {
    Input::Command(ClientCommand::Say {
        text: text.into(),
        room: None,
    })
}

fn limits(max_rate: u32, idle: Option<u64>) -> Limits {
    Limits {
        max_rate,
        idle: idle.map(Duration::from_secs),
        ..Limits::default()
    }
}

fn echo(id: u64) -> ServerEvent {
    ServerEvent::Message(MessageRecord {
        id,
        room: "lobby".into(),
        from: "alice".into(),
        text: "hi".into(),
        time: 0,
        action: false,
        notice: false,
        ticket: None,
    })
}

fn too_long() -> Input {
    Input::Refused(ServerEvent::error(ErrorCode::LineTooLong, "too long"))
}

fn handled(pending: Option<Pending>) -> Handled {
    Handled {
        flow: Flow::Continue,
        pending,
    }
}

/// Sessions past their arrival (announced by a first command, as most
/// tests begin with one): the arrival rule has a test of its own.
fn stream_session(limits: &Limits, now: Instant) -> Session {
    let mut session = Session::for_stream(limits, now);
    session.arrival_deadline = None;
    session
}

fn datagram_session(limits: &Limits, now: Instant) -> Session {
    let mut session = Session::for_datagrams(limits, now);
    session.arrival_deadline = None;
    session
}

fn actions(session: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| session.poll_action()).collect()
}

#[test]
fn a_command_runs_at_once_and_input_waits_for_its_outcome() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(say("hi"), now);
    assert_eq!(
        actions(&mut session),
        vec![Action::Run(ClientCommand::Say {
            text: "hi".into(),
            room: None
        })]
    );
    assert!(!session.wants_input());
    session.handle_handled(handled(None), now);
    assert!(session.wants_input());
    assert!(session.is_settled());
}

#[test]
fn the_rate_delays_past_the_burst_then_calls_it_a_flood() {
    let start = Instant::now();
    let mut session = stream_session(&limits(5, None), start);
    for _ in 0..5 {
        session.handle_input(say("x"), start);
        assert!(matches!(session.poll_action(), Some(Action::Run(_))));
        session.handle_handled(handled(None), start);
    }
    // The sixth waits its turn, and nothing more is read meanwhile.
    session.handle_input(say("x"), start);
    assert_eq!(session.poll_action(), None);
    assert!(!session.wants_input());
    let release = session.poll_timeout().expect("a release time");
    assert_eq!(release - start, Duration::from_millis(200));
    session.handle_timeout(release - Duration::from_millis(1));
    assert_eq!(session.poll_action(), None);
    session.handle_timeout(release);
    assert!(matches!(session.poll_action(), Some(Action::Run(_))));
    session.handle_handled(handled(None), release);
    // Keeping on over the rate, without pause, is a flood.
    let mut now = release;
    for _ in 0..9 {
        session.handle_input(say("x"), now);
        now = session.poll_timeout().unwrap();
        session.handle_timeout(now);
        assert!(matches!(session.poll_action(), Some(Action::Run(_))));
        session.handle_handled(handled(None), now);
    }
    session.handle_input(say("x"), now);
    assert_eq!(
        actions(&mut session),
        vec![Action::End(Ending::Removed(DropReason::Flood { rate: 5 }))]
    );
}

#[test]
fn messages_overtake_a_pending_echo_but_nothing_else_does() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(say("one"), now);
    actions(&mut session);
    session.handle_handled(handled(Some(Pending::Echo(1))), now);
    session.handle_input(say("two"), now);
    assert!(matches!(session.poll_action(), Some(Action::Run(_))));
    session.handle_handled(handled(Some(Pending::Echo(2))), now);
    // An error about bad input waits for both echoes.
    session.handle_input(too_long(), now);
    assert_eq!(session.poll_action(), None);
    session.handle_delivered(&echo(1), now);
    assert_eq!(session.poll_action(), None);
    session.handle_delivered(&echo(2), now);
    assert!(matches!(
        session.poll_action(),
        Some(Action::Tell(ServerEvent::Error { .. }))
    ));
    assert!(session.is_settled());
}

#[test]
fn a_lookup_holds_even_messages() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(
        Input::Command(ClientCommand::Search { text: "a".into() }),
        now,
    );
    actions(&mut session);
    session.handle_handled(handled(Some(Pending::Lookup)), now);
    session.handle_input(say("after"), now);
    assert_eq!(session.poll_action(), None);
    let results = ServerEvent::SearchResults {
        room: "lobby".into(),
        query: "a".into(),
        messages: Vec::new(),
    };
    session.handle_delivered(&results, now);
    assert!(matches!(session.poll_action(), Some(Action::Run(_))));
}

#[test]
fn an_answer_that_never_comes_is_given_up_after_the_wait() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(say("one"), now);
    actions(&mut session);
    session.handle_handled(handled(Some(Pending::Echo(1))), now);
    session.handle_input(Input::Command(ClientCommand::Rooms), now);
    assert_eq!(session.poll_action(), None);
    assert_eq!(session.poll_timeout(), Some(now + ANSWER_WAIT));
    session.handle_timeout(now + ANSWER_WAIT);
    assert_eq!(
        session.poll_action(),
        Some(Action::Run(ClientCommand::Rooms))
    );
}

#[test]
fn reading_stops_with_too_many_messages_in_flight() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    for id in 1..=MAX_IN_FLIGHT as u64 {
        assert!(session.wants_input());
        session.handle_input(say("x"), now);
        actions(&mut session);
        session.handle_handled(handled(Some(Pending::Echo(id))), now);
    }
    assert!(!session.wants_input());
    session.handle_delivered(&echo(1), now);
    assert!(session.wants_input());
}

#[test]
fn a_silent_member_is_asked_and_removed_if_it_does_not_answer() {
    let start = Instant::now();
    let keepalive = Keepalive::from_secs(120, 60);
    let mut session = stream_session(&limits(0, None), start).with_keepalive(keepalive, start);
    let asked_at = start + Duration::from_secs(120);
    assert_eq!(session.poll_timeout(), Some(asked_at));
    session.handle_timeout(asked_at);
    assert_eq!(
        session.poll_action(),
        Some(Action::Tell(ServerEvent::Probe))
    );
    // Any input answers, and the clock starts again.
    let answered = asked_at + Duration::from_secs(59);
    session.handle_input(Input::Nothing, answered);
    session.handle_timeout(asked_at + Duration::from_secs(60));
    assert_eq!(session.poll_action(), None);
    assert_eq!(
        session.poll_timeout(),
        Some(answered + Duration::from_secs(120))
    );
    // Asked again, and silent: removed, saying for how long.
    let asked_again = answered + Duration::from_secs(120);
    session.handle_timeout(asked_again);
    assert_eq!(
        session.poll_action(),
        Some(Action::Tell(ServerEvent::Probe))
    );
    session.handle_timeout(asked_again + Duration::from_secs(60));
    assert_eq!(
        session.poll_action(),
        Some(Action::End(Ending::Removed(DropReason::Unresponsive {
            secs: 180
        })))
    );
    // Without the rule (every door but IRC), silence asks nothing.
    let mut quiet = stream_session(&limits(0, None), start);
    assert_eq!(quiet.poll_timeout(), None);
    quiet.handle_timeout(start + Duration::from_secs(10_000));
    assert_eq!(quiet.poll_action(), None);
}

#[test]
fn silence_past_the_idle_limit_ends_the_session() {
    let start = Instant::now();
    let mut session = stream_session(&limits(0, Some(60)), start);
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(60))
    );
    // Input resets the clock.
    let later = start + Duration::from_secs(50);
    session.handle_input(Input::Nothing, later);
    session.handle_timeout(start + Duration::from_secs(60));
    assert_eq!(session.poll_action(), None);
    session.handle_timeout(later + Duration::from_secs(60));
    assert_eq!(
        session.poll_action(),
        Some(Action::End(Ending::Removed(DropReason::Idle { secs: 60 })))
    );
}

#[test]
fn a_datagram_member_expires() {
    let start = Instant::now();
    let limits = Limits {
        udp_expiry: Duration::from_secs(120),
        ..limits(0, None)
    };
    let mut session = datagram_session(&limits, start);
    session.handle_timeout(start + Duration::from_secs(120));
    assert_eq!(
        session.poll_action(),
        Some(Action::End(Ending::Removed(DropReason::Expired {
            secs: 120
        })))
    );
}

#[test]
fn the_mode_switch_answers_in_turn_with_mode_then_welcome() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(say("one"), now);
    actions(&mut session);
    session.handle_handled(handled(Some(Pending::Echo(1))), now);
    session.handle_input(Input::SwitchMode(WireMode::Json), now);
    assert_eq!(session.poll_action(), None);
    session.handle_delivered(&echo(1), now);
    assert_eq!(
        actions(&mut session),
        vec![
            Action::Tell(ServerEvent::Mode {
                mode: WireMode::Json
            }),
            Action::Welcome
        ]
    );
}

#[test]
fn end_of_input_is_a_goodbye_after_what_came_before() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, None), now);
    session.handle_input(Input::Command(ClientCommand::history(None)), now);
    actions(&mut session);
    session.handle_handled(handled(Some(Pending::Lookup)), now);
    session.handle_end_of_input(now);
    assert_eq!(session.poll_action(), None);
    let history = ServerEvent::History {
        room: "lobby".into(),
        messages: Vec::new(),
    };
    session.handle_delivered(&history, now);
    assert_eq!(
        session.poll_action(),
        Some(Action::Run(ClientCommand::Quit { reason: None }))
    );
    session.handle_handled(
        Handled {
            flow: Flow::Quit,
            pending: None,
        },
        now,
    );
    assert_eq!(session.poll_action(), Some(Action::End(Ending::Quit)));
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn endings_say_who_tells_whom() {
    assert_eq!(Ending::Quit.departure(), None);
    assert_eq!(Ending::Quit.farewell(), None);
    assert_eq!(
        Ending::Lost("reset".into()).departure(),
        Some(Departure::Lost)
    );
    let idle = Ending::Removed(DropReason::Idle { secs: 5 });
    assert_eq!(
        idle.departure(),
        Some(Departure::Dropped(DropReason::Idle { secs: 5 }))
    );
    assert_eq!(
        idle.farewell(),
        Some(ServerEvent::Bye {
            reason: "idle for 5 s".into(),
            code: Some(ErrorCode::Idle)
        })
    );
    let kicked = Ending::Dropped(DropReason::Kicked { reason: None });
    assert_eq!(kicked.departure(), None);
    assert!(matches!(
        kicked.farewell(),
        Some(ServerEvent::Bye {
            code: Some(ErrorCode::Kicked),
            ..
        })
    ));
}

#[test]
fn a_hub_drop_ends_the_session_once() {
    let now = Instant::now();
    let mut session = stream_session(&limits(0, Some(1)), now);
    session.handle_dropped(DropReason::SendqExceeded);
    session.handle_dropped(DropReason::ShuttingDown);
    session.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(
        actions(&mut session),
        vec![Action::End(Ending::Dropped(DropReason::SendqExceeded))]
    );
    assert!(!session.wants_input());
}

fn output(written: u64, waiting: bool, congested: bool) -> Output {
    Output {
        written,
        waiting,
        congested,
    }
}

#[test]
fn a_congested_member_whose_connection_takes_nothing_is_dropped_after_the_stall_timeout() {
    let start = Instant::now();
    let stall = Limits::default().stall_timeout;
    let mut session = stream_session(&Limits::default(), start);
    session.handle_output(output(100, true, true), start);
    assert_eq!(session.poll_timeout(), Some(start + stall));
    session.handle_timeout(start + stall - Duration::from_millis(1));
    assert!(actions(&mut session).is_empty());
    // The same count later: still no progress, the clock kept running.
    session.handle_output(output(100, true, true), start + stall / 2);
    session.handle_timeout(start + stall);
    assert_eq!(
        actions(&mut session),
        vec![Action::End(Ending::Removed(DropReason::SendqExceeded))]
    );
}

#[test]
fn any_progress_restarts_the_stall_clock_and_an_uncongested_member_has_none() {
    let start = Instant::now();
    let stall = Limits::default().stall_timeout;
    let mut session = stream_session(&Limits::default(), start);
    session.handle_output(output(100, true, true), start);
    // A slow reader: one byte taken just before each deadline.
    let mut now = start;
    for written in 101..110 {
        now += stall - Duration::from_millis(1);
        session.handle_output(output(written, true, true), now);
        session.handle_timeout(now);
        assert!(actions(&mut session).is_empty());
    }
    assert_eq!(session.poll_timeout(), Some(now + stall));
    // Not holding anyone back (or nothing waiting): no clock at all.
    session.handle_output(output(109, true, false), now);
    assert_eq!(session.poll_timeout(), None);
    session.handle_output(output(109, false, true), now);
    session.handle_timeout(now + stall * 10);
    assert!(actions(&mut session).is_empty());
    // Datagram doors have no stall rule: a send never waits.
    let mut datagrams = datagram_session(&Limits::default(), start);
    datagrams.handle_output(output(0, true, true), start);
    assert_eq!(
        datagrams.poll_timeout(),
        Some(start + Limits::default().udp_expiry)
    );
}

#[test]
fn a_newcomer_is_announced_once_when_the_arrival_grace_ends() {
    let start = Instant::now();
    for mut session in [
        Session::for_stream(&limits(0, Some(60)), start),
        Session::for_datagrams(&limits(0, Some(60)), start),
    ] {
        assert_eq!(session.poll_timeout(), Some(start + ARRIVAL_GRACE));
        session.handle_timeout(start + ARRIVAL_GRACE - Duration::from_millis(1));
        assert!(actions(&mut session).is_empty());
        // Commands before it do not stop it: the hub announces at most once.
        session.handle_input(say("hi"), start);
        assert!(matches!(&actions(&mut session)[..], [Action::Run(_)]));
        session.handle_handled(handled(None), start);
        session.handle_timeout(start + ARRIVAL_GRACE);
        assert_eq!(actions(&mut session), vec![Action::Arrive]);
        session.handle_timeout(start + ARRIVAL_GRACE * 2);
        assert!(actions(&mut session).is_empty());
        assert!(session.poll_timeout() > Some(start + ARRIVAL_GRACE));
    }
}
