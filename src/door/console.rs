//! The operator's console: when the server runs on a terminal, what the
//! operator types is said in the default room as `server`, and room
//! traffic is shown back. `/kick NICK [REASON]` is the console's own. A
//! door like the others: the server spawns and tracks it, and shutdown
//! ends it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::{Door, DoorContext};
use crate::hub::{Hub, MemberId};
use crate::protocol::command::JSON_SWITCH;
use crate::protocol::{parse_line, ClientCommand, Departure, WireMode};

/// What works on the console: the room commands of a member that is the
/// server itself (no nick of its own to change, no wire to switch, no
/// goodbye), and `/kick`.
const HELP: &str = "\
console commands:
  TEXT               say TEXT in the current room, as server
  /me ACTION         say an action: * server ACTION
  /msg NICK TEXT     private message
  /join ROOM         join ROOM and talk there
  /part [ROOM]       leave ROOM (default: the current room)
  /who [ROOM]        members of a room
  /rooms             rooms with members
  /history [N]       the last N messages of the current room
  /search WORDS      past messages of the current room with all the WORDS
  /ping              answered with a pong
  /kick NICK [REASON] disconnect NICK, telling the room why
  /help              this list
Ctrl-C stops the server.";

/// The console on the server's own stdin and stdout.
#[derive(Debug, Default)]
pub struct ConsoleDoor;

impl Door for ConsoleDoor {
    fn name(&self) -> &'static str {
        "console"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let input = tokio::io::BufReader::new(tokio::io::stdin());
            let console = run(context.hub, input, tokio::io::stdout());
            // Shutdown does not wait for the operator to press Enter: the
            // console stops here, whatever its stdin read is doing.
            tokio::select! {
                _ = context.shutdown.cancelled() => {}
                stopped = console => if let Err(error) = stopped {
                    tracing::warn!(%error, "console stopped");
                },
            }
        })
    }
}

/// Runs the console until `input` ends. Output errors end it too (the
/// terminal is gone); the server carries on either way.
pub async fn run(
    hub: Hub,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut membership = hub.connect_console();
    let mut lines = input.lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else {
                    hub.disconnect(membership.id, Departure::Quit { reason: None });
                    return Ok(());
                };
                if let Some(reply) = run_line(&hub, membership.id, &line) {
                    output.write_all(format!("{reply}\n").as_bytes()).await?;
                }
            }
            outgoing = membership.outbox.recv() => {
                let Some(outgoing) = outgoing else { return Ok(()) };
                output.write_all(outgoing.encoded(WireMode::Text)).await?;
            }
        }
        output.flush().await?;
    }
}

/// Carries out one console line; returns what to tell the operator
/// directly (everything else arrives through the console's outbox).
fn run_line(hub: &Hub, id: MemberId, line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix("/kick") {
        let mut words = rest.trim().splitn(2, char::is_whitespace);
        let Some(nick) = words.next().filter(|nick| !nick.is_empty()) else {
            return Some("! usage: /kick NICK [REASON]".into());
        };
        let reason = words
            .next()
            .map(str::trim)
            .filter(|reason| !reason.is_empty());
        return Some(match hub.kick(nick, reason) {
            Ok(()) => format!("* kicked {nick}"),
            Err(why) => format!("! {why}"),
        });
    }
    if line.trim().eq_ignore_ascii_case(JSON_SWITCH) {
        return Some("! the console shows text only".into());
    }
    match parse_line(line) {
        Ok(Some(ClientCommand::Quit { .. })) => {
            Some("* the console stays; stop the server with Ctrl-C".into())
        }
        Ok(Some(ClientCommand::Help)) => Some(HELP.into()),
        Ok(Some(ClientCommand::Nick { .. })) => {
            Some("! the console is always server: its nick does not change".into())
        }
        Ok(Some(command)) => {
            hub.handle(id, command);
            None
        }
        Ok(None) => None,
        Err(error) => Some(super::tcp::parse_error(&error).to_text()),
    }
}
