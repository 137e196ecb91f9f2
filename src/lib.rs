//! sockchat: one chat hub that serves many clients at once over TCP, UDP
//! and the browser, in the same rooms.
//!
//! # Layout
//!
//! - [`protocol`]: commands, events, and their text and JSON encodings;
//!   shared by the server and the client.
//! - [`hub`]: rooms, members, nicknames, the word filter, recent history.
//!   No sockets: doors feed it commands and drain member outboxes.
//! - [`session`]: the per-member rules every door applies (rate, answers
//!   in order, idle, farewell), without I/O: time comes in as an argument.
//! - [`door`]: the ways in, wire work only: [`door::tcp`] (text and JSON
//!   lines over any byte stream), [`door::udp`] (datagrams), [`door::web`]
//!   (the page and its WebSocket), [`door::console`] (the operator's
//!   terminal); one driver runs a session over any of them.
//! - [`cluster`]: nodes sharing rooms over NATS: the link that carries a
//!   node's messages to the cluster's log and the log back to its hub.
//! - [`store`]: history behind a trait; SQLite and the group-commit writer.
//! - [`server`]: the door registry: binds the doors, runs them, shuts them
//!   down, history last.
//! - [`client`]: `sockchat connect`, the terminal client: full screen
//!   ([`client::tui`]) or plain lines.
//! - [`loadgen`]: `sockchat bench`, the load generator.
//! - [`metrics`]: the counters behind `/metrics`.
//! - [`cli`]: command-line flags and the TOML config file, parsed only;
//!   [`server::config`] and `client::settings` merge them.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod cluster;
pub mod door;
pub mod hub;
pub mod loadgen;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
