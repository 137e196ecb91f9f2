//! `sockchat connect --raw`: the classic client's wire manners, for bare
//! socket servers. Each typed line is sent exactly as typed, with no
//! terminator; whatever arrives is printed as it comes. After sending
//! `byebye` (or `bye`) it closes, as the classic client does.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::protocol::command::GOODBYE_WORDS;
use crate::protocol::line_codec::{Frame, LineCodec};

/// After our input ends, how long to keep printing what the server sends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(target: &super::Target) -> anyhow::Result<ExitCode> {
    let link = match super::link::open(target).await {
        Ok(link) => link,
        Err(super::link::LinkError::Unreachable(why)) => {
            return Ok(super::cannot_connect(&target.server, &why))
        }
        Err(super::link::LinkError::NotTrusted(why)) => return Ok(super::not_trusted(&why)),
    };
    let (mut reader, mut writer) = tokio::io::split(link.stream);
    let mut stdin = FramedRead::new(tokio::io::stdin(), LineCodec::new(1 << 16));
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 4096];
    let mut input_done = false;
    let mut deadline = None;
    loop {
        let drain_until = deadline;
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => return Ok(ExitCode::SUCCESS),
                Ok(count) => {
                    stdout.write_all(&buf[..count]).await?;
                    stdout.flush().await?;
                }
                Err(error) => {
                    eprintln!("sockchat: lost the connection: {error}");
                    return Ok(ExitCode::from(super::EXIT_SERVER_GONE));
                }
            },
            line = stdin.next(), if !input_done => match line {
                Some(Ok(Frame::Line(line))) => {
                    writer.write_all(line.as_bytes()).await?;
                    if GOODBYE_WORDS.contains(&line.trim()) {
                        // Send nothing more, but print what the server
                        // still says until it closes.
                        input_done = true;
                        let _ = writer.shutdown().await;
                        deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                    }
                }
                Some(Ok(_)) => eprintln!("sockchat: skipped an input line (too long or not UTF-8)"),
                Some(Err(_)) | None => {
                    input_done = true;
                    let _ = writer.shutdown().await;
                    deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
            },
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() => {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
