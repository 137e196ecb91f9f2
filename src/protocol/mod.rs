//! The chat protocol shared by every door and by our client: what a client
//! asks for ([`ClientCommand`]), what the server tells it ([`ServerEvent`]),
//! and the two wire encodings of events (plain text lines and JSON lines).

#[cfg(test)]
pub(crate) mod arbitrary;
pub mod command;
pub mod datagram;
mod event;
pub mod irc;
pub mod line_codec;
mod reason;
pub mod text;

pub use command::{parse_line, ClientCommand, ParseError, Password, Point, WireMode};
pub use event::{ErrorCode, MessageRecord, Outgoing, Person, RoomInfo, ServerEvent};
pub use reason::{Departure, DropReason, LeaveReason, NotChat, Violation};
