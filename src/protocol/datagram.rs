//! The structured UDP protocol our client speaks: one JSON object per
//! datagram. Bare clients send plain text instead (see `docs/PROTOCOL.md`).

use serde::{Deserialize, Serialize};

use super::{ClientCommand, ServerEvent};

/// A datagram from a structured client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDatagram {
    /// Increasing per session. A retransmission repeats the id; the server
    /// then answers again without carrying out the command twice.
    pub id: u64,
    /// What to do; none is a poll or keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<ClientCommand>,
    /// The token from the server's `retry`, echoed to prove that this
    /// address receives what is sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// Ignored filler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<String>,
}

/// A datagram from the server to a structured client. Clients read the
/// events as [`ServerEvent`]s; the server writes each one's JSON as already
/// encoded for its other recipients ([`EncodedEvent`]), not re-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerDatagram<E = ServerEvent> {
    /// The one answer to the client datagram with this id.
    Ack {
        ack: u64,
        /// What the command produced: your message as the room saw it,
        /// errors, lists. Room traffic comes in pushes.
        events: Vec<E>,
    },
    /// The datagram with this id was not carried out: this address has not
    /// shown it receives what is sent to it. Send it again (the same id)
    /// with `token` as `proof`.
    Retry { ack: u64, token: String },
    /// Events pushed as they happen, to proven addresses only.
    Push {
        /// Increases by one per push datagram; a gap means pushes were lost.
        seq: u64,
        events: Vec<E>,
    },
}

/// An event's JSON as the server already encoded it, written into a
/// datagram as is.
pub type EncodedEvent<'a> = &'a serde_json::value::RawValue;

impl<E: Serialize> ServerDatagram<E> {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).expect("datagrams serialise")
    }
}

impl ClientDatagram {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).expect("datagrams serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_datagrams_encode_without_empty_fields() {
        let datagram = ClientDatagram {
            id: 3,
            cmd: Some(ClientCommand::Rooms),
            proof: None,
            pad: None,
        };
        assert_eq!(datagram.encode(), br#"{"id":3,"cmd":{"type":"rooms"}}"#);
        let back: ClientDatagram = serde_json::from_slice(&datagram.encode()).unwrap();
        assert_eq!(back, datagram);
    }

    #[test]
    fn server_datagrams_parse() {
        let ack: ServerDatagram = serde_json::from_str(
            r#"{"type":"ack","ack":1,"events":[{"type":"notice","text":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ack,
            ServerDatagram::Ack {
                ack: 1,
                events: vec![ServerEvent::Notice { text: "hi".into() }],
            }
        );
    }
}
