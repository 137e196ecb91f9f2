//! Micro-benchmarks of the hot paths, so a regression shows as a number:
//! splitting a TCP byte stream into lines, sanitising relayed text, and one
//! message fanned out to rooms of 100 and 1000 members. The fan-out also
//! counts heap allocations per message (printed before it is timed): the
//! allocator here counts every call.
//!
//! `cargo bench --bench hot_paths` (criterion; add `-- --save-baseline NAME`
//! and `-- --baseline NAME` to compare two versions).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt;
use sockchat::hub::{DoorKind, Hub, HubConfig, Membership};
use sockchat::protocol::line_codec::{Frame, LineCodec};
use sockchat::protocol::text::sanitize;
use sockchat::protocol::{ClientCommand, MessageRecord, WireMode};
use tokio_util::codec::Decoder;

/// The system allocator, counting allocations.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

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
        while session.outbox.try_recv().is_some() {}
    }
    (hub, sessions)
}

/// One message said and taken by every member, as each member's door
/// does: out of the outbox, and its bytes (encoded once, shared by all).
fn say_and_deliver(hub: &Hub, sessions: &mut [Membership]) {
    let sender = sessions[0].id;
    hub.handle(
        sender,
        ClientCommand::Say {
            text: "hello everyone".into(),
            room: None,
        },
    );
    for session in sessions.iter_mut() {
        let outgoing = session.outbox.try_recv().expect("delivered");
        black_box(outgoing.encoded(WireMode::Text));
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for members in [100, 1000] {
        let (hub, mut sessions) = room(members);
        // Warm up (channels reach their steady block count), then count.
        for _ in 0..100 {
            say_and_deliver(&hub, &mut sessions);
        }
        const COUNTED: u64 = 100;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..COUNTED {
            say_and_deliver(&hub, &mut sessions);
        }
        let per_message = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / COUNTED as f64;
        eprintln!(
            "fan_out/{members}: {per_message:.1} allocations per message, {:.3} per delivery",
            per_message / members as f64
        );
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(format!("one message to {members} members"), |b| {
            b.iter(|| say_and_deliver(&hub, &mut sessions))
        });
    }
    group.finish();
}

/// Messages in one commit, as under load (a busy room's commits carry
/// about fifty).
const RUN: usize = 50;

/// One commit of `RUN` messages fanned out, and taken by every member as
/// the TCP door takes it: whole deliveries, their bytes copied into the
/// member's write buffer.
fn commit_and_deliver(
    hub: &Hub,
    sessions: &mut [Membership],
    next_id: &mut u64,
    buffers: &mut [BytesMut],
) {
    let run = (0..RUN)
        .map(|_| {
            *next_id += 1;
            MessageRecord {
                id: *next_id,
                room: "lobby".into(),
                from: "guest-1".into(),
                time: *next_id,
                text: "hello everyone".into(),
                action: false,
                notice: false,
                ticket: None,
            }
        })
        .collect();
    hub.fan_out(run);
    let mut batch = Vec::new();
    for (session, buffer) in sessions.iter_mut().zip(buffers.iter_mut()) {
        session
            .outbox
            .recv_many(&mut batch, 64 * 1024)
            .now_or_never()
            .expect("delivered");
        for delivery in batch.drain(..) {
            for event in delivery.events() {
                buffer.extend_from_slice(event.encoded(WireMode::Text));
            }
        }
        session.outbox.release();
        buffer.clear();
    }
}

fn fan_out_commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out_commit");
    for members in [100, 1000] {
        let (hub, mut sessions) = room(members);
        let mut buffers = vec![BytesMut::with_capacity(16 * 1024); members];
        let mut next_id = 0;
        for _ in 0..10 {
            commit_and_deliver(&hub, &mut sessions, &mut next_id, &mut buffers);
        }
        const COUNTED: u64 = 10;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..COUNTED {
            commit_and_deliver(&hub, &mut sessions, &mut next_id, &mut buffers);
        }
        let per_message =
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / (COUNTED * RUN as u64) as f64;
        eprintln!(
            "fan_out_commit/{members}: {per_message:.1} allocations per message, {:.4} per delivery",
            per_message / members as f64
        );
        group.throughput(Throughput::Elements((members * RUN) as u64));
        group.bench_function(format!("a commit of {RUN} to {members} members"), |b| {
            b.iter(|| commit_and_deliver(&hub, &mut sessions, &mut next_id, &mut buffers))
        });
    }
    group.finish();
}

criterion_group!(
    hot_paths,
    line_decoding,
    sanitising,
    fan_out,
    fan_out_commits
);
criterion_main!(hot_paths);
