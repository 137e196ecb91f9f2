//! Hostile input, one test per class of attack (issue 14's battery): each
//! must get a clear refusal or a close, and leave everyone else intact.

mod common;

use common::{config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw WebSocket handshake to the web door; the socket after the 101.
async fn raw_websocket(web: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(web).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    socket
}

/// Reads until the server closes the connection; panics if it does not
/// within the test's patience.
async fn expect_closed(socket: &mut TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(common::PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// A frame announced bigger than the frame cap is refused from its header:
/// the server never buffers toward it, and closes.
#[tokio::test]
async fn a_websocket_frame_over_the_cap_is_refused_from_its_header() {
    let server = start(config()).await;
    let mut bystander = server.client_named("bystander").await;
    let mut socket = raw_websocket(server.web.unwrap()).await;
    // A masked text frame announcing 16 MiB (64-bit length), then a little
    // of it, then silence: a server that buffers frames whole would wait.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x'; 1000]);
    socket.write_all(&frame).await.unwrap();
    expect_closed(&mut socket).await;
    // Everyone else carries on.
    bystander.send("still here").await;
    bystander.expect("[lobby] bystander: still here").await;
    server.stop().await;
}
