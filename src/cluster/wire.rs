//! What a cluster node puts on NATS and reads back, without any I/O: the
//! subjects, the headers and the payload of a room message in the log.
//!
//! A room's messages go to `sockchat.room.TOKEN` (an ephemeral room's to
//! `sockchat.ephemeral.TOKEN`), where TOKEN is the room's name with every
//! byte outside `[a-z0-9_-]` written `%XX`, so a room is always exactly
//! one subject token (`.` separates tokens; `*` and `>` are wildcards).

use serde::{Deserialize, Serialize};

use crate::hub::cluster::{Presence, RemoteMember, RoomChange, RoomEntry, MAX_NAMED};
use crate::protocol::text::{is_ephemeral, normalize_room, sanitize, validate_nick};
use crate::protocol::{MessageRecord, ServerEvent};
use crate::store::StoredMessage;

/// The JetStream stream that is the cluster's log of room messages.
pub const STREAM: &str = "SOCKCHAT";

/// The subjects of that stream.
pub const ROOM_SUBJECTS: &str = "sockchat.room.>";
pub const EPHEMERAL_SUBJECTS: &str = "sockchat.ephemeral.>";
pub const PRIVATE_SUBJECTS: &str = "sockchat.private.>";
pub const PRIVATE_PREFIX: &str = "sockchat.private.";

/// Every subject of the log, as its stream and its readers name them.
pub const LOG_SUBJECTS: [&str; 3] = [ROOM_SUBJECTS, EPHEMERAL_SUBJECTS, PRIVATE_SUBJECTS];

/// The JetStream key-value bucket of nicks: key to the node holding it.
pub const NICKS_BUCKET: &str = "sockchat_nicks";

/// A nick's key (its `nick_key`) as a key of [`NICKS_BUCKET`], which
/// allows only `[-/_=.a-zA-Z0-9]`: every other byte is written `=XX`.
pub fn nick_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            _ => out.push_str(&format!("={byte:02X}")),
        }
    }
    out
}

/// The nick key a key of [`NICKS_BUCKET`] was written from (see
/// [`nick_key`]), if it is one.
pub fn key_of_entry(entry_key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(entry_key.len());
    let mut rest = entry_key.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        match byte {
            b'=' => {
                let hex = std::str::from_utf8(after.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &after[2..];
            }
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => {
                bytes.push(byte);
                rest = after;
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// A member's entry in [`NICKS_BUCKET`]: its node's run (`origin`, as
/// [`Origin::header`] says it), its id there, and what others see of it.
pub fn member_entry(origin: &str, member: u64, version: u64, presence: &Presence) -> bytes::Bytes {
    let entry = RemoteMember {
        origin: origin.to_string(),
        member,
        version,
        presence: presence.clone(),
    };
    serde_json::to_vec(&entry)
        .expect("an entry always serializes")
        .into()
}

/// Rooms one entry may list: more than any member may be in.
const MAX_ENTRY_ROOMS: usize = 1000;

/// The member an entry of [`NICKS_BUCKET`] is, if it is one sockchat
/// wrote. What another node wrote is checked as a client's input would be:
/// a valid nick, valid room names (not too many), harmless text.
pub fn remote_member(value: &[u8]) -> Option<RemoteMember> {
    let mut member: RemoteMember = serde_json::from_slice(value).ok()?;
    let presence = &mut member.presence;
    validate_nick(&presence.nick).ok()?;
    if presence.rooms.len() > MAX_ENTRY_ROOMS
        || presence
            .rooms
            .iter()
            .any(|room| normalize_room(room).ok().as_ref() != Some(room))
    {
        return None;
    }
    presence.door = door_name(&presence.door).to_string();
    presence.away = presence
        .away
        .take()
        .map(|away| sanitize(&away).into_owned());
    Some(member)
}

/// The member id in an entry this node wrote.
pub fn entry_member(value: &[u8]) -> Option<u64> {
    remote_member(value).map(|member| member.member)
}

/// The JetStream key-value bucket of rooms' own state: room key to its
/// [`RoomEntry`].
pub const ROOMS_BUCKET: &str = "sockchat_rooms";

/// A room's key in [`ROOMS_BUCKET`], written as a nick's is.
pub fn room_key(room: &str) -> String {
    nick_key(room)
}

/// A room's entry as stored.
pub fn room_value(entry: &RoomEntry) -> bytes::Bytes {
    serde_json::to_vec(entry)
        .expect("an entry always serializes")
        .into()
}

/// The room entry stored under `key`, if sockchat wrote it: checked as a
/// client's input would be, since its text reaches every node's members.
pub fn room_entry(key: &str, value: &[u8]) -> Option<RoomEntry> {
    let mut entry: RoomEntry = serde_json::from_slice(value).ok()?;
    if normalize_room(&entry.room).ok().as_ref() != Some(&entry.room)
        || room_key(&entry.room) != key
        || [&entry.ops, &entry.voiced, &entry.invited]
            .iter()
            .any(|named| named.len() > MAX_NAMED)
    {
        return None;
    }
    if let Some(topic) = &mut entry.topic {
        validate_nick(&topic.by).ok()?;
        topic.text = sanitize(&topic.text).into_owned();
    }
    let nicks_are_valid = match &mut entry.change {
        None | Some(RoomChange::Found { .. } | RoomChange::Forget { .. }) => true,
        Some(RoomChange::Topic { topic, by, .. }) => {
            if let Some(topic) = topic {
                topic.text = sanitize(&topic.text).into_owned();
            }
            validate_nick(by).is_ok()
        }
        Some(RoomChange::Modes {
            flags,
            ranks,
            modes,
            by,
        }) => {
            *modes = sanitize(modes).into_owned();
            validate_nick(by).is_ok()
                && flags.iter().all(|(_, flag)| "imnst".contains(*flag))
                && (ranks.iter())
                    .all(|(_, flag, _, nick)| "ov".contains(*flag) && validate_nick(nick).is_ok())
        }
        Some(RoomChange::Invite { nick, by_nick, .. }) => {
            validate_nick(nick).is_ok() && validate_nick(by_nick).is_ok()
        }
        Some(RoomChange::Kick {
            nick, by, reason, ..
        }) => {
            if let Some(reason) = reason {
                *reason = sanitize(reason).into_owned();
            }
            validate_nick(nick).is_ok() && validate_nick(by).is_ok()
        }
    };
    nicks_are_valid.then_some(entry)
}

/// Where private messages for `node`'s members go, in the log (every node
/// reads them, and takes its own).
pub fn private_subject(node: &str) -> String {
    format!("{PRIVATE_PREFIX}{node}")
}

/// A private message for `member` of the node run `origin` (`NODE/BOOT`):
/// its subject and payload.
pub fn private(origin: &str, member: u64, event: &ServerEvent) -> (String, bytes::Bytes) {
    let node = origin.split('/').next().unwrap_or(origin);
    let payload = serde_json::json!({ "to": origin, "member": member, "event": event });
    (private_subject(node), payload.to_string().into())
}

/// Who a private message is for, and the message, if sockchat wrote it.
pub fn read_private(payload: &[u8]) -> Option<(String, u64, ServerEvent)> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let to = value.get("to")?.as_str()?.to_string();
    let member = value.get("member")?.as_u64()?;
    let event: ServerEvent = serde_json::from_value(value.get("event")?.clone()).ok()?;
    // Only private messages travel this way, checked as a client's input.
    let ServerEvent::Private {
        from,
        to: recipient,
        text,
        time,
        notice,
    } = event
    else {
        return None;
    };
    validate_nick(&from).ok()?;
    validate_nick(&recipient).ok()?;
    let event = ServerEvent::Private {
        from,
        to: recipient,
        text: sanitize(&text).into_owned(),
        time,
        notice,
    };
    Some((to, member, event))
}

/// Which node (and which run of it) said a message: `NODE/BOOT`.
pub const ORIGIN_HEADER: &str = "Sockchat-Origin";
/// The origin's ticket for it (see `crate::hub::cluster`).
pub const TICKET_HEADER: &str = "Sockchat-Ticket";

/// One run of one node: its name, and a random number drawn at start, so
/// that a restarted node's tickets are never taken for its last run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: String,
    pub boot: u64,
}

impl Origin {
    /// What [`ORIGIN_HEADER`] says for this run.
    pub fn header(&self) -> String {
        format!("{}/{:016x}", self.node, self.boot)
    }

    /// The `Nats-Msg-Id` of this run's message `ticket`: the stream drops
    /// a second publication of it (a retry after a lost ack) within its
    /// duplicate window.
    pub fn message_id(&self, ticket: u64) -> String {
        format!("{}/{ticket}", self.header())
    }
}

/// The payload of a room message in the log. Its id is the log's sequence
/// number, so it is not in here.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    room: String,
    from: String,
    text: String,
    time: u64,
    #[serde(default)]
    action: bool,
    #[serde(default)]
    notice: bool,
    door: String,
}

/// A message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub subject: String,
    pub message_id: String,
    pub origin: String,
    pub ticket: u64,
    pub payload: Vec<u8>,
}

/// The subject a room's messages go to.
pub fn subject(room: &str) -> String {
    let kind = if is_ephemeral(room) {
        "ephemeral"
    } else {
        "room"
    };
    let mut subject = format!("sockchat.{kind}.");
    for byte in room.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => subject.push(byte as char),
            _ => subject.push_str(&format!("%{byte:02X}")),
        }
    }
    subject
}

/// `message`, said on this node (its id is the ticket), as published.
pub fn encode(origin: &Origin, message: &StoredMessage) -> Outbound {
    let record = &message.record;
    let payload = Payload {
        room: record.room.clone(),
        from: record.from.clone(),
        text: record.text.clone(),
        time: record.time,
        action: record.action,
        notice: record.notice,
        door: message.door.to_string(),
    };
    Outbound {
        subject: subject(&record.room),
        message_id: origin.message_id(record.id),
        origin: origin.header(),
        ticket: record.id,
        payload: serde_json::to_vec(&payload).expect("a payload always serializes"),
    }
}

/// Why a message in the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a sockchat message: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("a message for a room of another subject ({0})")]
    WrongSubject(String),
    #[error("a room name or a sender that no client could have")]
    NotValid,
}

/// The message at `sequence` in the log, as this node (`me`) stores and
/// fans it out: its id is `sequence`, and if this run said it, it carries
/// its ticket back.
pub fn decode(
    me: &Origin,
    sequence: u64,
    subject_published: &str,
    origin: Option<&str>,
    ticket: Option<&str>,
    payload: &[u8],
) -> Result<StoredMessage, WireError> {
    let mut payload: Payload = serde_json::from_slice(payload)?;
    // A room name that does not give back its subject was not written by
    // `encode`: it could name a room its subject's readers do not expect.
    if subject(&payload.room) != subject_published {
        return Err(WireError::WrongSubject(subject_published.to_string()));
    }
    // Checked as a client's input would be: what one node wrote reaches
    // every node's terminals and IRC clients.
    if normalize_room(&payload.room).ok().as_ref() != Some(&payload.room)
        || validate_nick(&payload.from).is_err()
    {
        return Err(WireError::NotValid);
    }
    payload.text = sanitize(&payload.text).into_owned();
    let ticket = match origin {
        Some(origin) if origin == me.header() => ticket.and_then(|ticket| ticket.parse().ok()),
        _ => None,
    };
    Ok(StoredMessage {
        record: MessageRecord {
            id: sequence,
            room: payload.room,
            from: payload.from,
            text: payload.text,
            time: payload.time,
            action: payload.action,
            notice: payload.notice,
            ticket,
        },
        door: door_name(&payload.door),
        to: None,
    })
}

/// A door's name as stored, from what another node said.
fn door_name(door: &str) -> &'static str {
    match door {
        "tcp" => "tcp",
        "tls" => "tls",
        "udp" => "udp",
        "web" => "web",
        "irc" => "irc",
        "console" => "console",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(id: u64, room: &str, text: &str) -> StoredMessage {
        StoredMessage {
            record: MessageRecord {
                id,
                room: room.into(),
                from: "alice".into(),
                text: text.into(),
                time: 1_700_000_000_000,
                action: true,
                notice: false,
                ticket: None,
            },
            door: "irc",
            to: None,
        }
    }

    #[test]
    fn a_room_is_one_subject_token() {
        assert_eq!(subject("lobby"), "sockchat.room.lobby");
        assert_eq!(subject("a.b"), "sockchat.room.a%2Eb");
        assert_eq!(subject("~load"), "sockchat.ephemeral.%7Eload");
        assert_eq!(subject("聊天"), "sockchat.room.%E8%81%8A%E5%A4%A9");
        // Distinct rooms never share a subject.
        assert_ne!(subject("a%2eb"), subject("a.b"));
    }

    #[test]
    fn a_message_comes_back_with_the_logs_id_and_to_its_node_its_ticket() {
        let me = Origin {
            node: "n1".into(),
            boot: 7,
        };
        let other = Origin {
            node: "n2".into(),
            boot: 7,
        };
        let ticket = crate::hub::TICKETS_FROM + 3;
        let outbound = encode(&me, &said(ticket, "聊天", "你好 wave"));
        assert_eq!(outbound.message_id, format!("n1/0000000000000007/{ticket}"));
        let read = |reader: &Origin| {
            decode(
                reader,
                42,
                &outbound.subject,
                Some(&outbound.origin),
                Some(&ticket.to_string()),
                &outbound.payload,
            )
            .unwrap()
        };
        let mine = read(&me);
        assert_eq!(mine.record.id, 42);
        assert_eq!(mine.record.ticket, Some(ticket));
        assert_eq!(
            (mine.record.text.as_str(), mine.record.action, mine.door),
            ("你好 wave", true, "irc")
        );
        let theirs = read(&other);
        assert_eq!(theirs.record.ticket, None);
        assert_eq!(
            theirs.record,
            MessageRecord {
                ticket: None,
                ..mine.record
            }
        );
    }

    #[test]
    fn a_nick_key_comes_back_from_its_entrys_key() {
        for nick in ["bob", "guest-n2-10", "小明", "[bot]^`{a|b}", "a=b"] {
            let key = crate::protocol::text::nick_key(nick);
            assert_eq!(key_of_entry(&nick_key(&key)).as_deref(), Some(key.as_str()));
        }
        assert_eq!(key_of_entry("Bob"), None);
        assert_eq!(key_of_entry("b=4"), None);
        assert_eq!(key_of_entry("=FF"), None);
    }

    #[test]
    fn a_room_entry_is_read_back_only_under_its_own_key_and_checked() {
        let mut entry = RoomEntry::new("聊天");
        entry.topic = Some(crate::hub::cluster::TopicEntry {
            text: "red \x1b[31m text".into(),
            by: "ann".into(),
            at: 1,
        });
        let key = room_key("聊天");
        assert_eq!(key, "=E8=81=8A=E5=A4=A9");
        let read = room_entry(&key, &room_value(&entry)).expect("sockchat's own entry");
        assert!(!read.topic.unwrap().text.contains('\x1b'));
        // Under another room's key, or with a nick no client may have: refused.
        assert!(room_entry("lab", &room_value(&entry)).is_none());
        entry.topic.as_mut().unwrap().by = "a b".into();
        assert!(room_entry(&key, &room_value(&entry)).is_none());
        assert!(room_entry(&key, b"{not json").is_none());
    }

    #[test]
    fn junk_and_misplaced_messages_are_refused() {
        let me = Origin {
            node: "n1".into(),
            boot: 1,
        };
        let junk = decode(&me, 1, "sockchat.room.lobby", None, None, b"\xff{");
        assert!(matches!(junk, Err(WireError::Payload(_))));
        let outbound = encode(&me, &said(5, "lobby", "hi"));
        let moved = decode(&me, 2, "sockchat.room.ops", None, None, &outbound.payload);
        assert!(matches!(moved, Err(WireError::WrongSubject(_))));
        // What no client could say is refused; text is made harmless.
        let mut forged = said(6, "lobby", "ring\x1b[2J\r\nPRIVMSG #x :spoof");
        forged.record.from = "evil nick\r\n".into();
        let outbound = encode(&me, &forged);
        let refused = decode(&me, 3, "sockchat.room.lobby", None, None, &outbound.payload);
        assert!(matches!(refused, Err(WireError::NotValid)));
        forged.record.from = "evil".into();
        let outbound = encode(&me, &forged);
        let read = decode(&me, 4, "sockchat.room.lobby", None, None, &outbound.payload).unwrap();
        assert!(!read.record.text.contains('\x1b') && !read.record.text.contains('\n'));
        let entry = |nick: &str, room: &str| {
            let presence = Presence {
                nick: nick.into(),
                door: "tcp".into(),
                rooms: vec![room.into()],
                away: Some("out\x1b[31m".into()),
                invisible: false,
            };
            remote_member(&member_entry("n1/1", 1, 1, &presence))
        };
        assert!(entry("bad nick", "lobby").is_none());
        assert!(entry("alice", "Not A Room").is_none());
        let alice = entry("alice", "lobby").unwrap();
        assert!(!alice.presence.away.unwrap().contains('\x1b'));
    }
}
