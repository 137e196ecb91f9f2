//! Micro-benchmarks of the hot paths, so a regression shows as a number:
//! splitting a TCP byte stream into lines, sanitising relayed text, and one
//! message fanned out to a room of 1000 members.
//!
//! `cargo bench --bench hot_paths` (criterion; add `-- --save-baseline NAME`
//! and `-- --baseline NAME` to compare two versions).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sockchat::hub::{DoorKind, Hub, HubConfig, Membership};
use sockchat::protocol::line_codec::{Frame, LineCodec};
use sockchat::protocol::text::sanitize;
use sockchat::protocol::ClientCommand;
use tokio_util::codec::Decoder;

/// 1000 chat lines, Chinese and ASCII, as they arrive on a socket.
fn chat_stream() -> Vec<u8> {
    (0..1000)
        .map(|index| format!("message {index}: 今天天气很好, let us meet at the usual place\r\n"))
        .collect::<String>()
        .into_bytes()
}

fn line_decoding(c: &mut Criterion) {
    let stream = chat_stream();
    let mut group = c.benchmark_group("line_decoding");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("1000 lines", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut codec = LineCodec::new(4096);
                let mut lines = 0;
                while let Ok(Some(frame)) = codec.decode(&mut buf) {
                    if let Frame::Line(line) = frame {
                        black_box(line);
                        lines += 1;
                    }
                }
                assert_eq!(lines, 1000);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn sanitising(c: &mut Criterion) {
    let clean = "今天天气很好, let us meet at the usual place ".repeat(4);
    let hostile = "hi \u{1b}[2J\u{202e}reversed\u{7} there ".repeat(4);
    let mut group = c.benchmark_group("sanitize");
    group.bench_function("clean text (borrowed)", |b| {
        b.iter(|| black_box(sanitize(black_box(&clean))))
    });
    group.bench_function("control characters (rewritten)", |b| {
        b.iter(|| black_box(sanitize(black_box(&hostile))))
    });
    group.finish();
}

/// A room of `members`, everyone's welcome already taken.
fn room(members: usize) -> (Hub, Vec<Membership>) {
    let hub = Hub::new(HubConfig {
        big_room: 0,
        ..HubConfig::default()
    });
    let mut sessions: Vec<Membership> = (0..members)
        .map(|_| hub.connect(DoorKind::Tcp, None).expect("room for everyone"))
        .collect();
    for session in &mut sessions {
        while session.outbox.try_recv().is_ok() {}
    }
    (hub, sessions)
}

fn fan_out(c: &mut Criterion) {
    let (hub, mut sessions) = room(1000);
    let sender = sessions[0].id;
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("one message to 1000 members", |b| {
        b.iter(|| {
            hub.handle(
                sender,
                ClientCommand::Say {
                    text: "hello everyone".into(),
                    room: None,
                },
            );
            // What each member's door does next: take it from the outbox
            // and get its bytes (encoded once, shared by all).
            for session in &mut sessions {
                let outgoing = session.outbox.try_recv().expect("delivered");
                black_box(outgoing.encoded(sockchat::protocol::WireMode::Text));
            }
        })
    });
    group.finish();
}

criterion_group!(hot_paths, line_decoding, sanitising, fan_out);
criterion_main!(hot_paths);
