//! History on a real SQLite file: replay after a restart, nothing lost to
//! SIGKILL, /history and /search (Chinese included), retention, schema
//! migration, and every fault at start and while running.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::process::{serve_fails, ServerProcess};
use common::{config_with_history, start, Client};
use serde_json::Value;
use sockchat::server::Server;

#[tokio::test]
async fn a_restart_keeps_history_and_replays_it_on_join() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server = start(config_with_history(&db)).await;
    let mut alice = server.client_named("alice").await;
    for text in ["first", "second 第二", "third"] {
        alice.send(text).await;
        alice.expect(text).await;
    }
    server.stop().await;

    let server = start(config_with_history(&db)).await;
    let mut late = Client::connect(server.addr).await;
    late.expect("welcome").await;
    assert_eq!(late.line().await, "* last 3 message(s) in #lobby:");
    assert_eq!(late.line().await, "(history) [lobby] alice: first");
    assert_eq!(late.line().await, "(history) [lobby] alice: second 第二");
    assert_eq!(late.line().await, "(history) [lobby] alice: third");
    // New messages number on from the stored ones, and JSON clients see
    // history as a typed event.
    late.send("/json").await;
    late.expect("mode").await;
    late.send(r#"{"type":"say","text":"fourth"}"#).await;
    let fourth: Value = serde_json::from_str(&late.expect("fourth").await).unwrap();
    late.send(r#"{"type":"history","count":2}"#).await;
    let history: Value = serde_json::from_str(&late.expect(r#""type":"history""#).await).unwrap();
    let ids: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4]);
    assert_eq!(fourth["id"], 4);
    server.stop().await;
}

#[tokio::test]
async fn history_and_search_find_past_messages_in_any_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_history(&dir.path().join("h.db"))).await;
    let mut ming = server.client_named("小明").await;
    for text in [
        "今天天气很好",
        "我们去吃饭吧",
        "hello world",
        "天气预报说明天下雨",
    ] {
        ming.send(text).await;
        ming.expect(text).await;
    }
    ming.send("/search 天气").await;
    assert_eq!(
        ming.line().await,
        "* 2 message(s) in #lobby match \"天气\":"
    );
    assert_eq!(ming.line().await, "(found) [lobby] 小明: 今天天气很好");
    assert_eq!(
        ming.line().await,
        "(found) [lobby] 小明: 天气预报说明天下雨"
    );
    // Three characters and more go through the full-text index.
    ming.send("/search 天气很好").await;
    assert_eq!(
        ming.line().await,
        "* 1 message(s) in #lobby match \"天气很好\":"
    );
    ming.line().await;
    ming.send("/search WORLD hello").await;
    assert_eq!(
        ming.line().await,
        "* 1 message(s) in #lobby match \"WORLD hello\":"
    );
    assert_eq!(ming.line().await, "(found) [lobby] 小明: hello world");
    ming.send("/search 不存在").await;
    assert_eq!(
        ming.line().await,
        "* 0 message(s) in #lobby match \"不存在\":"
    );
    ming.send("/history 2").await;
    assert_eq!(ming.line().await, "* last 2 message(s) in #lobby:");
    assert_eq!(ming.line().await, "(history) [lobby] 小明: hello world");
    assert_eq!(
        ming.line().await,
        "(history) [lobby] 小明: 天气预报说明天下雨"
    );
    // Another room has its own past.
    ming.send("/join other").await;
    ming.expect("#other has").await;
    ming.send("/search 天气").await;
    assert_eq!(
        ming.expect("match").await,
        "* 0 message(s) in #other match \"天气\":"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_history_search_says_so_and_history_comes_from_memory() {
    let server = start(common::config_without_history()).await;
    let mut client = server.client().await;
    client.send("kept in memory").await;
    client.expect("kept in memory").await;
    client.send("/search memory").await;
    assert_eq!(
        client.line().await,
        "! search needs history, and this server keeps none (--no-history)"
    );
    client.send("/history").await;
    assert_eq!(client.line().await, "* last 1 message(s) in #lobby:");
    server.stop().await;
}

#[tokio::test]
async fn retention_keeps_only_the_newest_messages_per_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut settings = config_with_history(&db);
    settings.history.retention.max_per_room = Some(3);
    let server = start(settings.clone()).await;
    let mut client = server.client_named("c").await;
    for index in 0..6 {
        client.send(&format!("message {index}")).await;
        client.expect(&format!("message {index}")).await;
    }
    server.stop().await;
    // Retention runs when the writer starts, then every 30 s.
    let server = start(settings).await;
    let mut client = server.client().await;
    client.expect("(history) [lobby] c: message 5").await;
    client.send("/history 50").await;
    assert_eq!(
        client.expect("last").await,
        "* last 3 message(s) in #lobby:"
    );
    assert_eq!(client.line().await, "(history) [lobby] c: message 3");
    server.stop().await;
}

/// The first version of the schema, as a sockchat of that version left it.
const VERSION_1: &str = "
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        time INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX messages_by_room ON messages (room, id);
    INSERT INTO messages VALUES (1, 'lobby', 'old-timer', 1700000000000, '很久以前的消息');
    INSERT INTO messages VALUES (2, 'lobby', 'old-timer', 1700000001000, 'from the old days');
    PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_database_is_upgraded_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(VERSION_1)
        .unwrap();
    let server = start(config_with_history(&db)).await;
    let mut client = Client::connect(server.addr).await;
    client.expect("welcome").await;
    assert_eq!(client.line().await, "* last 2 message(s) in #lobby:");
    assert_eq!(
        client.line().await,
        "(history) [lobby] old-timer: 很久以前的消息"
    );
    client.line().await;
    client.send("/search 以前的").await;
    assert_eq!(
        client.expect("(found)").await,
        "(found) [lobby] old-timer: 很久以前的消息"
    );
    client.send("/json").await;
    client.expect("mode").await;
    client.send(r#"{"type":"say","text":"new"}"#).await;
    let new: Value = serde_json::from_str(&client.expect("new").await).unwrap();
    assert_eq!(new["id"], 3);
    server.stop().await;
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, sockchat::store::sqlite::SCHEMA_VERSION);
}

#[tokio::test]
async fn start_up_faults_are_clear_errors_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "this is a text file, not a database ".repeat(200)).unwrap();
    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); PRAGMA user_version = 99;")
        .unwrap();
    let taken = dir.path().join("taken.db");
    let holder = Server::bind(config_with_history(&taken)).await.unwrap();

    let cases = [
        (
            file.join("history.db"),
            "for the history database {db}: a file of that name is in the way; \
             choose another --db, or run with --no-history",
        ),
        (
            dir.path().to_path_buf(),
            "cannot open the history database {db}: Is a directory (os error 21); \
             choose a writable --db, or run with --no-history",
        ),
        (junk, "is not a sockchat history database"),
        (
            newer,
            "has schema version 99, newer than this sockchat understands",
        ),
        (taken, "is in use by another sockchat server"),
    ];
    for (db, expected) in cases {
        let db = db.to_str().unwrap().to_string();
        let args = [
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "off",
            "--web",
            "off",
            "--db",
            &db,
        ];
        let stderr = serve_fails(&args).await;
        // One line: the path, the reason, what to do; nothing repeated.
        let expected = expected.replace("{db}", &db);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&expected), "{expected:?} not in {stderr}");
    }
    drop(holder);
}

#[tokio::test]
async fn a_full_database_warns_everyone_the_chat_goes_on_and_saving_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config_with_history(&dir.path().join("small.db"));
    settings.history.max_bytes = 96 * 1024;
    // Retention by age frees room once the old messages are a second old.
    settings.history.retention.max_age = Some(Duration::from_secs(1));
    let server = start(settings).await;
    let mut watcher = server.client().await;
    let mut talker = server.client_named("talker").await;
    let big = "字".repeat(1300);
    let mut sent = 0;
    let warning = loop {
        talker.send(&format!("{sent} {big}")).await;
        sent += 1;
        if let Some(warning) = drain_warning(&mut watcher, sent).await {
            break warning;
        }
        assert!(sent < 500, "the database never filled");
    };
    assert!(
        warning.starts_with("* warning: history is not being saved"),
        "{warning}"
    );
    // The chat goes on: messages are still delivered.
    talker.send("still chatting").await;
    assert_eq!(
        watcher.expect("still chatting").await,
        "[lobby] talker: still chatting"
    );
    assert_eq!(
        watcher.expect("saved again").await,
        "* history is being saved again"
    );
    talker.send("after the storm").await;
    watcher.expect("after the storm").await;
    server.stop().await;
}

/// Reads the watcher's lines up to the last message sent; returns the
/// history warning if one came first.
async fn drain_warning(watcher: &mut Client, sent: usize) -> Option<String> {
    let mut warning = None;
    loop {
        let line = watcher.line().await;
        if line.starts_with("* warning") {
            warning = Some(line);
        } else if line.starts_with(&format!("[lobby] talker: {} ", sent - 1)) {
            return warning;
        }
    }
}

#[tokio::test]
async fn sigkill_in_a_burst_loses_nothing_any_client_received() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let db_arg = db.to_str().unwrap();
    let args = ["--db", db_arg, "--tcp", "127.0.0.1:0", "--max-rate", "0"];
    let mut server = ServerProcess::start(&args).await;
    let mut receiver = Client::connect(server.addr).await;
    receiver.expect("welcome").await;
    let mut sender = Client::connect(server.addr).await;
    sender.expect("welcome").await;
    sender.send("/nick burst").await;
    receiver.expect("burst joined").await;

    // The sender blasts; the server dies while the messages are flowing.
    // Fewer than /history's 1000, so one replay can hold them all.
    let burst: String = (0..900).map(|index| format!("burst {index}\n")).collect();
    let (_sender_in, mut sender_out) = sender.into_stream().into_split();
    let blast = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = sender_out.write_all(burst.as_bytes()).await;
    });
    let mut received = HashSet::new();
    while received.len() < 200 {
        let line = receiver.line().await;
        if let Some(text) = line.strip_prefix("[lobby] burst: ") {
            received.insert(text.to_string());
        }
    }
    server.child.kill().await.unwrap();
    // Whatever else had reached the receiver counts too.
    while let Some(line) = receiver.try_line().await {
        if let Some(text) = line.strip_prefix("[lobby] burst: ") {
            received.insert(text.to_string());
        }
    }
    blast.abort();

    let server = ServerProcess::start(&args).await;
    let mut reader = Client::connect(server.addr).await;
    reader.expect("welcome").await;
    // The replay on join (the last 20), then everything.
    read_history_block(&mut reader).await;
    reader.send("/history 1000").await;
    let replayed = read_history_block(&mut reader).await;
    let missing: Vec<_> = received.difference(&replayed).collect();
    assert!(missing.is_empty(), "received but not on disk: {missing:?}");
    assert!(received.len() >= 200);
    server.terminate().await;
}

/// Reads a `* last N message(s)` block; returns the burst texts in it.
async fn read_history_block(reader: &mut Client) -> HashSet<String> {
    let header = reader.expect("* last").await;
    let count: usize = header
        .strip_prefix("* last ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("unexpected {header:?}"));
    let mut texts = HashSet::new();
    for _ in 0..count {
        let line = reader.line().await;
        if let Some(text) = line.strip_prefix("(history) [lobby] burst: ") {
            texts.insert(text.to_string());
        }
    }
    texts
}

#[tokio::test]
async fn a_piped_client_gets_its_lookups_answered_before_it_leaves() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"]).await;
    let addr = server.addr.to_string();
    let (code, stdout, stderr) = common::process::run_client(
        &[&addr, "--nick", "piper"],
        "第一条消息\nsecond message\n/search 消息\n/history 1\n",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let expected = "* 1 message(s) in #lobby match \"消息\":\n\
                    (found) [lobby] piper: 第一条消息\n\
                    * last 1 message(s) in #lobby:\n\
                    (history) [lobby] piper: second message\n\
                    * bye: goodbye, piper\n";
    assert!(stdout.ends_with(expected), "{stdout}");
    server.terminate().await;
}

#[tokio::test]
async fn private_messages_are_stored_only_when_asked() {
    for store_private in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let mut settings = config_with_history(&db);
        settings.hub.store_private = store_private;
        let server = start(settings).await;
        let mut alice = server.client_named("alice").await;
        let mut bob = server.client_named("bob").await;
        alice.send("/msg bob 秘密").await;
        bob.expect("秘密").await;
        bob.send("public").await;
        alice.expect("public").await;
        server.stop().await;
        let connection = rusqlite::Connection::open(&db).unwrap();
        let rows: Vec<(String, String, Option<String>, String)> = connection
            .prepare("SELECT sender, text, recipient, door FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let public = (
            "bob".to_string(),
            "public".to_string(),
            None,
            "tcp".to_string(),
        );
        if store_private {
            let private = (
                "alice".to_string(),
                "秘密".to_string(),
                Some("bob".to_string()),
                "tcp".to_string(),
            );
            assert_eq!(rows, vec![private, public]);
        } else {
            assert_eq!(rows, vec![public]);
        }
    }
}

/// SIGTERM in the middle of a burst: the server exits 0 once history is
/// closed, and every message any sender got an echo for is on disk.
#[tokio::test]
async fn sigterm_in_a_burst_commits_everything_echoed_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let db_arg = db.to_str().unwrap();
    let args = ["--db", db_arg, "--tcp", "127.0.0.1:0", "--max-rate", "0"];
    let server = ServerProcess::start(&args).await;
    let mut sender = Client::connect(server.addr).await;
    sender.expect("welcome").await;
    sender.send("/nick burst").await;
    sender.expect("now known as burst").await;
    let burst: String = (0..900).map(|index| format!("burst {index}\n")).collect();
    sender.send_bytes(burst.as_bytes()).await;
    let mut echoed = HashSet::new();
    while echoed.len() < 100 {
        let line = sender.line().await;
        if let Some(text) = line.strip_prefix("[lobby] burst: ") {
            echoed.insert(text.to_string());
        }
    }
    let stopping = tokio::spawn(server.terminate());
    // Every echo that still reaches the sender counts too.
    while let Some(line) = sender.try_line().await {
        if let Some(text) = line.strip_prefix("[lobby] burst: ") {
            echoed.insert(text.to_string());
        }
    }
    assert_eq!(stopping.await.unwrap(), 0);

    let server = ServerProcess::start(&args).await;
    let mut reader = Client::connect(server.addr).await;
    reader.expect("welcome").await;
    read_history_block(&mut reader).await;
    reader.send("/history 1000").await;
    let stored = read_history_block(&mut reader).await;
    let missing: Vec<_> = echoed.difference(&stored).collect();
    assert!(missing.is_empty(), "echoed but not on disk: {missing:?}");
    server.terminate().await;
}

/// A room whose name starts with `~` is ephemeral: what is said there
/// reaches its members and is never written to the database.
#[tokio::test]
async fn an_ephemeral_room_is_relayed_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server = start(config_with_history(&db)).await;
    let mut alice = server.client_named("alice").await;
    let mut bob = server.client_named("bob").await;
    for client in [&mut alice, &mut bob] {
        client.send("/join ~scratch").await;
        client.expect("joined #~scratch").await;
    }
    alice.send("off the record").await;
    assert_eq!(
        bob.expect("off the record").await,
        "[~scratch] alice: off the record"
    );
    alice.expect("off the record").await;
    alice.send("/search record").await;
    assert_eq!(
        alice.line().await,
        "! #~scratch is ephemeral: nothing said there is stored"
    );
    alice.send("/join lobby").await;
    alice.send("on the record").await;
    alice.expect("[lobby] alice: on the record").await;
    server.stop().await;

    let connection = rusqlite::Connection::open(&db).unwrap();
    let rooms: Vec<String> = connection
        .prepare("SELECT room FROM messages")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rooms, ["lobby"]);
}

/// A search that takes long (many short words over a long history) runs
/// beside the chat, not in its way: a message said while it runs is
/// delivered first. One with too many words is refused as too broad.
#[tokio::test]
async fn a_slow_search_never_delays_chat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    // A long history: 100,000 messages (the default retention), counted as
    // indexed so that the writer has no index work of its own to do.
    drop(sockchat::store::sqlite::SqliteStore::open(&db, 0).unwrap());
    let mut connection = rusqlite::Connection::open(&db).unwrap();
    let transaction = connection.transaction().unwrap();
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO messages (id, room, sender, time, text)
                 VALUES (?1, 'lobby', 'old', ?1, ?2)",
            )
            .unwrap();
        for id in 1..=100_000i64 {
            let text = format!("old message number {id} {}", "padding ".repeat(40));
            insert.execute(rusqlite::params![id, text]).unwrap();
        }
        transaction
            .execute("UPDATE search_index SET indexed_through = 100000", [])
            .unwrap();
    }
    transaction.commit().unwrap();
    drop(connection);

    let mut settings = config_with_history(&db);
    settings.history.lookup_budget = Duration::from_secs(60);
    let server = start(settings).await;
    let mut searcher = server.client_named("searcher").await;
    let mut talker = server.client_named("talker").await;
    // Short words (never looked up in the index) that every message
    // holds, then one that none does: every message is checked against
    // every word.
    let slow = "o l d m e s a g n u b r p i ol ld me es ss sa ag ge nu um mb be er pa ad q";
    searcher.send(&format!("/search {slow}")).await;
    talker.send("said during the search").await;
    assert_eq!(
        searcher.expect("said during").await,
        "[lobby] talker: said during the search"
    );
    // The search's answer comes after it.
    searcher.expect("0 message(s) in #lobby match").await;

    let many: Vec<String> = (0..40).map(|word| format!("w{word}")).collect();
    searcher.send(&format!("/search {}", many.join(" "))).await;
    assert_eq!(
        searcher.expect("too broad").await,
        "! search too broad: at most 32 different words"
    );
    server.stop().await;
}
