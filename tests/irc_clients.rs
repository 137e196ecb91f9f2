//! Real IRC clients in the same rooms as `nc` and the web: Python's irc
//! library (tests/irc/pyclient.py, from target/pyenv, which
//! scripts/test.sh makes).

mod common;

use std::process::Stdio;

use common::{config, start, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;

/// tests/irc/pyclient.py as a child: commands in, the library's events out.
struct PyIrc {
    _child: Child,
    commands: ChildStdin,
    events: Lines<BufReader<ChildStdout>>,
}

impl PyIrc {
    async fn connect(server: std::net::SocketAddr, nick: &str) -> PyIrc {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/irc/pyclient.py");
        let python = common::python::path();
        let mut child = Command::new(&python)
            .args([
                script,
                &server.ip().to_string(),
                &server.port().to_string(),
                nick,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}; run scripts/test.sh", python.display()));
        let commands = child.stdin.take().unwrap();
        let events = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = PyIrc {
            _child: child,
            commands,
            events,
        };
        client.expect("welcome ").await;
        client
    }

    async fn send(&mut self, command: &str) {
        let line = format!("{command}\n");
        self.commands.write_all(line.as_bytes()).await.unwrap();
        self.commands.flush().await.unwrap();
    }

    /// Reads events until one starts with `start`.
    async fn expect(&mut self, start: &str) -> String {
        let mut seen = Vec::new();
        let found = async {
            while let Some(event) = self.events.next_line().await.unwrap() {
                if event.starts_with(start) {
                    return event;
                }
                seen.push(event);
            }
            panic!("the client ended before {start:?}; saw {seen:#?}");
        };
        tokio::time::timeout(PATIENCE, found)
            .await
            .unwrap_or_else(|_| panic!("no {start:?} in time"))
    }
}

#[tokio::test]
async fn pythons_irc_library_chats_with_nc_and_the_web_in_one_room() {
    let server = start(config()).await;
    let mut nc = server.client_named("nc_user").await;
    let web = server.web.unwrap();
    let (mut page, _) = tokio_tungstenite::connect_async(format!("ws://{web}/ws"))
        .await
        .unwrap();
    let nick = r#"{"type":"nick","nick":"page"}"#;
    page.send(Message::Text(nick.into())).await.unwrap();
    nc.expect("page joined").await;

    let mut py = PyIrc::connect(server.irc.unwrap(), "pybot").await;
    py.send("join #lobby").await;
    assert_eq!(py.expect("join ").await, "join pybot #lobby");
    let names = py.expect("namreply ").await;
    for nick in ["nc_user", "page", "pybot"] {
        assert!(names.split(' ').any(|word| word == nick), "{names}");
    }
    nc.expect("pybot joined").await;

    nc.send("hello python").await;
    assert_eq!(
        py.expect("pubmsg ").await,
        "pubmsg nc_user #lobby hello python"
    );
    let say = r#"{"type":"say","text":"from the page, 你好"}"#;
    page.send(Message::Text(say.into())).await.unwrap();
    assert_eq!(
        py.expect("pubmsg ").await,
        "pubmsg page #lobby from the page, 你好"
    );

    py.send("say #lobby hi all").await;
    assert_eq!(nc.expect("pybot:").await, "[lobby] pybot: hi all");
    let heard = async {
        loop {
            let frame = page.next().await.unwrap().unwrap();
            if frame.to_text().unwrap().contains("hi all") {
                return frame.to_text().unwrap().to_string();
            }
        }
    };
    let heard = tokio::time::timeout(PATIENCE, heard).await.unwrap();
    assert!(heard.contains(r#""from":"pybot""#), "{heard}");

    py.send("action #lobby waves").await;
    assert_eq!(nc.expect("waves").await, "[lobby] * pybot waves");
    nc.send("/me waves back").await;
    assert_eq!(
        py.expect("action ").await,
        "action nc_user #lobby waves back"
    );

    py.send("say nc_user psst").await;
    assert_eq!(
        nc.expect("[private]").await,
        "[private] pybot -> nc_user: psst"
    );
    nc.send("/msg pybot psst back").await;
    assert_eq!(
        py.expect("privmsg ").await,
        "privmsg nc_user pybot psst back"
    );

    py.send("nick page").await;
    assert!(py.expect("nicknameinuse ").await.contains("page"));
    py.send("nick pyirc").await;
    assert_eq!(py.expect("nick ").await, "nick pybot pyirc");
    assert_eq!(nc.expect("known as").await, "* pybot is now known as pyirc");

    nc.send("/quit").await;
    assert_eq!(py.expect("quit ").await, "quit nc_user - Quit");
    py.send("quit done here").await;
    assert!(py
        .expect("error ")
        .await
        .starts_with("error - Closing Link"));
    server.stop().await;
}

/// Reads `path` until it holds `needle`; returns the line that does. (The
/// clients here report only through files: this waits for what they
/// wrote, looking again every few milliseconds.)
async fn file_line(path: &std::path::Path, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return line.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} never reached {}; it holds:\n{text}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes one line into a client's FIFO (its reader is the client).
async fn fifo_line(path: &std::path::Path, line: &str) {
    file_line_exists(path).await;
    let (path, line) = (path.to_path_buf(), format!("{line}\n"));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        fifo.write_all(line.as_bytes()).unwrap();
    })
    .await
    .unwrap();
}

/// Waits until the client has made `path`.
async fn file_line_exists(path: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weechat_ii_nc_and_a_browser_page_chat_in_one_room() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let server = start(config()).await;
    let irc = server.irc.unwrap();
    let mut nc = server.client_named("ncuser").await;
    let dir = tempfile::tempdir().unwrap();

    // WeeChat, headless: commands through its FIFO, what it saw in its logs.
    let (fifo, logs) = (dir.path().join("weechat.fifo"), dir.path().join("logs"));
    let setup = [
        format!("/set fifo.file.path {}", fifo.display()),
        "/set logger.file.flush_delay 0".to_string(),
        format!("/set logger.file.path {}", logs.display()),
        format!("/server add sock {}/{} -notls", irc.ip(), irc.port()),
        "/set irc.server.sock.nicks wee".to_string(),
        "/set irc.server.sock.autojoin #lobby".to_string(),
        "/connect sock".to_string(),
    ]
    .join(";");
    let _weechat = Command::new("weechat-headless")
        .arg("-d")
        .arg(dir.path().join("weechat"))
        .args(["-r", &setup])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("weechat-headless is installed: run scripts/test.sh");
    assert_eq!(nc.expect("wee joined").await, "* wee joined #lobby");

    // ii: a directory of FIFOs and files per server and channel.
    let ii_dir = dir.path().join("ii");
    let _ii = Command::new("ii")
        .arg("-s")
        .arg(irc.ip().to_string())
        .arg("-p")
        .arg(irc.port().to_string())
        .args(["-n", "iiuser", "-i"])
        .arg(&ii_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ii is installed: run scripts/test.sh");
    let ii_server = ii_dir.join(irc.ip().to_string());
    fifo_line(&ii_server.join("in"), "/j #lobby").await;
    assert_eq!(nc.expect("iiuser joined").await, "* iiuser joined #lobby");

    // The page, in Chromium: it says its line and waits for everyone's.
    let mut page = Command::new("node")
        .arg(browser_dir.join("irc.mjs"))
        .arg("--web")
        .arg(format!("http://{}/", server.web.unwrap()))
        .args(["--nick", "page", "--say", "from the page, 你好"])
        .args(["--hear", "from weechat,from ii,from nc"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut page_out = BufReader::new(page.stdout.take().unwrap()).lines();
    let online = tokio::time::timeout(PATIENCE, page_out.next_line()).await;
    assert_eq!(online.unwrap().unwrap().as_deref(), Some("page online"));
    assert_eq!(
        nc.expect("page:").await,
        "[lobby] page: from the page, 你好"
    );

    fifo_line(&fifo, "irc.sock.#lobby *from weechat").await;
    fifo_line(&ii_server.join("#lobby").join("in"), "from ii").await;
    nc.send("from nc").await;

    // In whichever order they come (WeeChat paces what it sends).
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let line = nc.line().await;
        if line.contains("from weechat") || line.contains("from ii") {
            heard.push(line);
        }
    }
    heard.sort();
    assert_eq!(
        heard,
        ["[lobby] iiuser: from ii", "[lobby] wee: from weechat"]
    );
    // WeeChat's log: "TIME\tNICK\tTEXT".
    let weechat_log = logs.join("irc.sock.#lobby.weechatlog");
    for (nick, text) in [
        ("page", "from the page, 你好"),
        ("iiuser", "from ii"),
        ("ncuser", "from nc"),
    ] {
        let line = file_line(&weechat_log, text).await;
        assert!(line.ends_with(&format!("\t{nick}\t{text}")), "{line}");
    }
    // ii's channel file: "TIME <NICK> TEXT".
    let ii_out = ii_server.join("#lobby").join("out");
    for (nick, text) in [
        ("page", "from the page, 你好"),
        ("wee", "from weechat"),
        ("ncuser", "from nc"),
    ] {
        let line = file_line(&ii_out, text).await;
        assert!(line.ends_with(&format!("<{nick}> {text}")), "{line}");
    }
    let passed = tokio::time::timeout(PATIENCE, page_out.next_line()).await;
    assert_eq!(
        passed.unwrap().unwrap().as_deref(),
        Some("irc page checks passed")
    );
    assert!(page.wait().await.unwrap().success());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn irssi_in_a_terminal_chats_with_nc() {
    let server = start(config()).await;
    let irc = server.irc.unwrap();
    let mut nc = server.client_named("ncuser").await;
    let home = tempfile::tempdir().unwrap();
    let pane = common::tmux::Pane::open(&format!(
        "irssi --home={} --connect={} --port={} --nick=irssiuser",
        home.path().display(),
        irc.ip(),
        irc.port()
    ));
    pane.wait_for("the welcome", |screen| {
        screen.contains("Welcome to the sockchat IRC network")
    });
    pane.keys(&["/join #lobby", "Enter"]);
    assert_eq!(
        nc.expect("irssiuser joined").await,
        "* irssiuser joined #lobby"
    );
    nc.send("hello irssi, 你好").await;
    pane.wait_for("the message from nc", |screen| {
        screen.contains("hello irssi, 你好")
    });
    pane.keys(&["hi from irssi", "Enter"]);
    assert_eq!(
        nc.expect("irssiuser:").await,
        "[lobby] irssiuser: hi from irssi"
    );
    pane.keys(&["/quit leaving now", "Enter"]);
    assert_eq!(
        nc.expect("irssiuser left").await,
        "* irssiuser left (leaving now)"
    );
    server.stop().await;
}
