//! Strategies for property tests: any command a client could send, with
//! the text people type (Chinese, emoji, control characters and all).

use proptest::prelude::*;

use super::{ClientCommand, Password};

/// Text as people (and attackers) type it: any characters, short or long.
pub fn typed_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,20}",
        "[a-zA-Z0-9你好世界🙂 /\\\\\"\t]{0,40}",
        any::<String>(),
    ]
}

fn maybe_room() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("#?[a-z0-9]{1,12}")
}

/// Any command, as its JSON form allows it (names unchecked: the hub
/// checks them).
pub fn client_command() -> impl Strategy<Value = ClientCommand> {
    prop_oneof![
        (typed_text(), maybe_room()).prop_map(|(text, room)| ClientCommand::Say { text, room }),
        (typed_text(), maybe_room()).prop_map(|(text, room)| ClientCommand::Me { text, room }),
        (typed_text(), typed_text()).prop_map(|(to, text)| ClientCommand::Msg { to, text }),
        (typed_text(), typed_text()).prop_map(|(to, text)| ClientCommand::Notice { to, text }),
        typed_text().prop_map(|nick| ClientCommand::Nick { nick }),
        typed_text().prop_map(|room| ClientCommand::Join { room }),
        (maybe_room(), proptest::option::of(typed_text()))
            .prop_map(|(room, reason)| ClientCommand::Part { room, reason }),
        maybe_room().prop_map(|room| ClientCommand::Who { room }),
        Just(ClientCommand::Rooms),
        Just(ClientCommand::Help),
        (
            proptest::option::of(any::<usize>()),
            maybe_room(),
            proptest::option::of(any::<u64>().prop_map(crate::protocol::command::Point::Id)),
            proptest::option::of(any::<u64>().prop_map(crate::protocol::command::Point::Time)),
        )
            .prop_map(|(count, room, before, after)| ClientCommand::History {
                count,
                room,
                before,
                after
            }),
        typed_text().prop_map(|text| ClientCommand::Search { text }),
        proptest::option::of(typed_text()).prop_map(|reason| ClientCommand::Quit { reason }),
        any::<u64>().prop_map(|token| ClientCommand::Ping { token }),
        (maybe_room(), proptest::option::of(typed_text()))
            .prop_map(|(room, text)| ClientCommand::Topic { room, text }),
        (maybe_room(), proptest::option::of(typed_text()))
            .prop_map(|(room, change)| ClientCommand::Mode { room, change }),
        (
            maybe_room(),
            typed_text(),
            proptest::option::of(typed_text())
        )
            .prop_map(|(room, nick, reason)| ClientCommand::Kick { room, nick, reason }),
        (typed_text(), maybe_room()).prop_map(|(nick, room)| ClientCommand::Invite { nick, room }),
        proptest::collection::vec(typed_text(), 0..4)
            .prop_map(|targets| ClientCommand::Lookup { targets }),
        proptest::option::of(typed_text()).prop_map(|text| ClientCommand::Away { text }),
        Just(ClientCommand::Counts),
        any::<bool>().prop_map(|on| ClientCommand::Invisible { on }),
        (typed_text(), typed_text()).prop_map(|(name, password)| ClientCommand::Oper {
            name,
            password: Password(password),
        }),
        Just(ClientCommand::Unoper),
    ]
}

/// Bytes from a hostile peer: random, or text with stray newlines, CRs,
/// NULs, braces and invalid UTF-8 mixed in.
pub fn hostile_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[a-z /{}\":,]{0,12}".prop_map(String::into_bytes),
        2 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(vec![0]),
        1 => Just(vec![0xff, 0xfe]),
        1 => Just("你".as_bytes()[..2].to_vec()),
        1 => Just("/json\n".as_bytes().to_vec()),
        1 => Just(br#"{"type":"say","text":"x"}"#.to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..32).prop_map(move |pieces| {
        let mut bytes = pieces.concat();
        bytes.truncate(max);
        bytes
    })
}
