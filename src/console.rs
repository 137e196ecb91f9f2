//! The operator's console: when the server runs on a terminal, what the
//! operator types is said in the default room as `server`, and room
//! traffic is shown back. `/kick NICK [REASON]` is the console's own.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::hub::Hub;
use crate::protocol::{parse_line, ClientCommand, ServerEvent, WireMode};

/// Runs the console until `input` ends. Output errors end it too (the
/// terminal is gone); the server carries on either way.
pub async fn run(
    hub: Hub,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut session = hub.connect_console();
    let mut lines = input.lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else {
                    hub.disconnect(session.id, crate::protocol::LeaveReason::Quit, None);
                    return Ok(());
                };
                if let Some(reply) = run_line(&hub, session.id, &line) {
                    output.write_all(format!("{reply}\n").as_bytes()).await?;
                }
            }
            outgoing = session.outbox.recv() => {
                let Some(outgoing) = outgoing else { return Ok(()) };
                output.write_all(outgoing.encoded(WireMode::Text)).await?;
            }
        }
        output.flush().await?;
    }
}

/// Carries out one console line; returns what to tell the operator
/// directly (everything else arrives through the console's outbox).
fn run_line(hub: &Hub, id: crate::hub::MemberId, line: &str) -> Option<String> {
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
    match parse_line(line) {
        Ok(Some(ClientCommand::Quit { .. })) => {
            Some("* the console stays; stop the server with Ctrl-C".into())
        }
        Ok(Some(ClientCommand::Mode { .. })) => Some("! the console speaks text only".into()),
        Ok(Some(command)) => {
            hub.handle(id, command);
            None
        }
        Ok(None) => None,
        Err(error) => {
            Some(ServerEvent::error(crate::protocol::ErrorCode::Usage, error.to_string()).to_text())
        }
    }
}
