//! What the full-screen client shows, and how events and keys change it.
//! No terminal here: the view draws an `App`, tests drive one directly.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use super::input::Editor;
use super::theme::Theme;
use crate::protocol::text::sanitize;
use crate::protocol::{parse_line, ClientCommand, LeaveReason, MessageRecord, ServerEvent};

/// The tab for private messages.
pub const PRIVATE: &str = "private";

/// Lines kept per tab; older ones scroll away for good.
const SCROLLBACK: usize = 5000;

/// Rows one mouse-wheel step scrolls.
const WHEEL_ROWS: usize = 3;

/// One line in a tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the Unix epoch, for messages.
    pub time: Option<u64>,
    pub kind: EntryKind,
    /// Replayed from the server's history, not said just now.
    pub history: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Message {
        id: u64,
        from: String,
        text: String,
        action: bool,
        notice: bool,
        own: bool,
    },
    Private {
        from: String,
        to: String,
        text: String,
        notice: bool,
    },
    /// Joins, leaves, notices, answers to commands.
    System(String),
    Error(String),
}

/// A room (or the private tab) as this client sees it.
#[derive(Debug, Default)]
pub struct Tab {
    pub name: String,
    pub entries: Vec<Entry>,
    pub unread: usize,
    pub members: Vec<String>,
    /// Members in all; more than `members` in a big room.
    pub count: usize,
    /// Rows scrolled up from the bottom (0: following new lines).
    pub scroll: usize,
    /// The highest message id placed here: anything newer is appended.
    newest: u64,
}

impl Tab {
    fn new(name: &str) -> Tab {
        Tab {
            name: name.to_string(),
            ..Tab::default()
        }
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
        if self.entries.len() > SCROLLBACK {
            self.entries.drain(..self.entries.len() - SCROLLBACK);
        }
        if self.scroll > 0 {
            // Keep what the reader is looking at in place.
            self.scroll += 1;
        }
    }

    fn is_room(&self) -> bool {
        self.name != PRIVATE
    }
}

/// The state of the link to the server, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    /// Waiting to try again.
    Reconnecting {
        attempt: u32,
        at: Instant,
    },
}

/// What a key (or paste) asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ClientCommand),
    /// Leave: say goodbye if connected, else exit at once.
    Quit,
}

pub struct App {
    pub server: String,
    /// `tcp` or `udp`.
    pub door: &'static str,
    /// How the link is protected (TLS and the server's fingerprint), for
    /// the status line's lock.
    pub protection: Option<crate::client::Protection>,
    pub nick: String,
    pub link: Link,
    pub rtt: Option<Duration>,
    pub tabs: Vec<Tab>,
    pub current: usize,
    pub input: Editor,
    pub theme: Theme,
    /// Message ids shown, so history fetched after a reconnect does not
    /// repeat what is already on screen.
    seen: HashSet<u64>,
    /// Who plain text in the private tab goes to.
    last_private: Option<String>,
    /// Rows the messages pane showed last time (for PageUp/PageDown).
    pub page_rows: usize,
    /// Seconds east of UTC, for the times shown.
    pub utc_offset: i64,
}

impl App {
    pub fn new(server: &str, door: &'static str, theme: Theme) -> App {
        App {
            server: server.to_string(),
            door,
            protection: None,
            nick: String::new(),
            link: Link::Connecting,
            rtt: None,
            tabs: Vec::new(),
            current: 0,
            input: Editor::default(),
            theme,
            seen: HashSet::new(),
            last_private: None,
            page_rows: 10,
            utc_offset: 0,
        }
    }

    pub fn current_tab(&self) -> Option<&Tab> {
        self.tabs.get(self.current)
    }

    /// The room plain text goes to, if the current tab is a room.
    pub fn current_room(&self) -> Option<&str> {
        self.current_tab()
            .filter(|tab| tab.is_room())
            .map(|tab| tab.name.as_str())
    }

    /// The rooms joined, for rejoining after a reconnect.
    pub fn rooms(&self) -> Vec<String> {
        self.tabs
            .iter()
            .filter(|tab| tab.is_room())
            .map(|tab| tab.name.clone())
            .collect()
    }

    fn tab_index(&mut self, name: &str) -> usize {
        match self.tabs.iter().position(|tab| tab.name == name) {
            Some(index) => index,
            None => {
                // Rooms in the order joined; the private tab stays last.
                let private = self.tabs.iter().position(|tab| !tab.is_room());
                let at = match private {
                    Some(private) if name != PRIVATE => private,
                    _ => self.tabs.len(),
                };
                self.tabs.insert(at, Tab::new(name));
                // The tab shown stays the same one.
                if self.tabs.len() > 1 && at <= self.current {
                    self.current += 1;
                }
                at
            }
        }
    }

    fn push_to(&mut self, index: usize, entry: Entry) {
        if index != self.current {
            if let EntryKind::Message { .. } | EntryKind::Private { .. } = entry.kind {
                if !entry.history {
                    self.tabs[index].unread += 1;
                }
            }
        }
        self.tabs[index].push(entry);
    }

    /// A line from the client itself (or the server, unstructured), in the
    /// current tab.
    pub fn system(&mut self, text: &str) {
        let entry = Entry {
            time: None,
            kind: if text.starts_with('!') {
                EntryKind::Error(sanitize(text.trim_start_matches("! ")).into_owned())
            } else {
                EntryKind::System(sanitize(text.trim_start_matches("* ")).into_owned())
            },
            history: false,
        };
        if self.tabs.is_empty() {
            // In no room (the last one parted): the private tab is left.
            self.tab_index(PRIVATE);
        }
        let current = self.current.min(self.tabs.len() - 1);
        for line in split_lines(entry) {
            self.tabs[current].push(line);
        }
    }

    fn system_in(&mut self, room: &str, text: String) {
        let index = self.tab_index(room);
        self.tabs[index].push(Entry {
            time: None,
            kind: EntryKind::System(text),
            history: false,
        });
    }

    fn message_entry(&self, record: &MessageRecord, history: bool) -> Entry {
        Entry {
            time: Some(record.time),
            kind: EntryKind::Message {
                id: record.id,
                own: record.from == self.nick,
                from: sanitize(&record.from).into_owned(),
                text: sanitize(&record.text).into_owned(),
                action: record.action,
                notice: record.notice,
            },
            history,
        }
    }

    fn message(&mut self, record: MessageRecord, history: bool) {
        if !self.seen.insert(record.id) {
            return;
        }
        let index = self.tab_index(&record.room);
        let entry = self.message_entry(&record, history);
        let tab = &mut self.tabs[index];
        if record.id > tab.newest {
            tab.newest = record.id;
            self.push_to(index, entry);
            return;
        }
        // Older than what is shown (history fetched after a reconnect):
        // in id order among the messages.
        let later = tab.entries.iter().position(
            |shown| matches!(shown.kind, EntryKind::Message { id, .. } if id > record.id),
        );
        match later {
            Some(at) => tab.entries.insert(at, entry),
            None => self.push_to(index, entry),
        }
    }

    /// Applies one event from the server.
    pub fn apply(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Welcome {
                nick,
                room,
                members,
                count,
                server,
            } => {
                let first = self.nick.is_empty();
                self.nick = nick;
                self.link = Link::Connected;
                let index = self.tab_index(&room);
                if first {
                    // After a reconnect the tab shown stays as it was.
                    self.current = index;
                }
                self.tabs[index].members = members;
                self.tabs[index].count = count;
                self.system_in(
                    &room,
                    format!("connected to {} as {}", sanitize(&server), self.nick),
                );
            }
            ServerEvent::Message(record) => self.message(record, false),
            ServerEvent::History { messages, .. } => {
                for record in messages {
                    self.message(record, true);
                }
            }
            ServerEvent::SearchResults {
                query, messages, ..
            } => {
                self.system(&format!(
                    "{} message(s) match \"{}\":",
                    messages.len(),
                    sanitize(&query)
                ));
                let index = self.current.min(self.tabs.len().saturating_sub(1));
                for record in messages {
                    let entry = self.message_entry(&record, true);
                    if let Some(tab) = self.tabs.get_mut(index) {
                        tab.push(entry);
                    }
                }
            }
            ServerEvent::Private {
                from,
                to,
                text,
                time,
                notice,
            } => {
                self.last_private = Some(if from == self.nick {
                    to.clone()
                } else {
                    from.clone()
                });
                let index = self.tab_index(PRIVATE);
                self.push_to(
                    index,
                    Entry {
                        time: Some(time),
                        kind: EntryKind::Private {
                            from: sanitize(&from).into_owned(),
                            to: sanitize(&to).into_owned(),
                            text: sanitize(&text).into_owned(),
                            notice,
                        },
                        history: false,
                    },
                );
            }
            ServerEvent::Join { room, nick } => {
                let index = self.tab_index(&room);
                if nick == self.nick {
                    self.current = index;
                    self.tabs[index].unread = 0;
                } else if !self.tabs[index].members.contains(&nick) {
                    self.tabs[index].members.push(nick.clone());
                    self.tabs[index].count += 1;
                }
                self.system_in(&room, format!("{} joined #{room}", sanitize(&nick)));
            }
            ServerEvent::Leave {
                ref room,
                ref nick,
                reason,
                ..
            } => {
                if *nick == self.nick && reason == LeaveReason::Part {
                    if let Some(index) = self.tabs.iter().position(|tab| tab.name == *room) {
                        self.tabs.remove(index);
                        if self.current >= index && self.current > 0 {
                            self.current -= 1;
                        }
                    }
                    self.system(&format!("you left #{room}"));
                    return;
                }
                let index = self.tab_index(room);
                let tab = &mut self.tabs[index];
                if let Some(at) = tab.members.iter().position(|member| member == nick) {
                    tab.members.remove(at);
                    tab.count = tab.count.saturating_sub(1);
                }
                // The line a text client sees, without its "* ".
                let line = sanitize(&event.to_text())
                    .trim_start_matches("* ")
                    .to_string();
                self.system_in(room, line);
            }
            ServerEvent::Nick { old, new } => {
                if old == self.nick {
                    self.nick = new.clone();
                }
                for index in 0..self.tabs.len() {
                    let tab = &mut self.tabs[index];
                    if let Some(member) = tab.members.iter_mut().find(|member| **member == old) {
                        *member = new.clone();
                        let name = tab.name.clone();
                        self.system_in(
                            &name,
                            format!("{} is now known as {}", sanitize(&old), sanitize(&new)),
                        );
                    }
                }
            }
            ServerEvent::Members {
                room, nicks, count, ..
            } => {
                let index = self.tab_index(&room);
                self.tabs[index].members = nicks;
                self.tabs[index].count = count;
            }
            ServerEvent::Rooms { rooms } => {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|room| format!("#{} ({})", room.name, room.members))
                    .collect();
                self.system(&format!("rooms: {}", list.join(" ")));
            }
            // Switching tabs tells the server which room is current; its
            // answer says what the tab already shows.
            ServerEvent::Current { .. } => {}
            ServerEvent::Notice { text } => self.system(&text),
            ServerEvent::Error { message, .. } => self.system(&format!("! {message}")),
            ServerEvent::Bye { reason, .. } => self.system(&format!("bye: {reason}")),
            // A kick is a leave the room saw done.
            ServerEvent::Kick {
                room,
                nick,
                by,
                reason,
            } => {
                let detail = Some(match reason {
                    Some(reason) => format!("kicked by {by}: {reason}"),
                    None => format!("kicked by {by}"),
                });
                self.apply(ServerEvent::Leave {
                    room,
                    nick,
                    reason: LeaveReason::Part,
                    detail,
                });
            }
            event @ (ServerEvent::Topic { .. }
            | ServerEvent::RoomMode { .. }
            | ServerEvent::Found { .. }
            | ServerEvent::Away { .. }
            | ServerEvent::Presence { .. }
            | ServerEvent::Invited { .. }
            | ServerEvent::Operator { .. }
            | ServerEvent::Invisible { .. }
            | ServerEvent::Counts { .. }) => self.system(event.to_text().trim_start_matches("* ")),
            ServerEvent::Pong { .. }
            | ServerEvent::Mode { .. }
            | ServerEvent::Verbatim { .. }
            | ServerEvent::Probe => {}
        }
    }

    /// Switches to tab `index`; for a room, the returned command makes it
    /// the server's current room too (for `/history`, `/search`, `/who`).
    pub fn switch_to(&mut self, index: usize) -> Option<Action> {
        if index >= self.tabs.len() || index == self.current {
            return None;
        }
        self.current = index;
        self.tabs[index].unread = 0;
        let tab = &self.tabs[index];
        tab.is_room().then(|| {
            Action::Send(ClientCommand::Join {
                room: tab.name.clone(),
            })
        })
    }

    /// Handles a terminal event; what the runtime must do next, if anything.
    pub fn on_terminal(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            Event::Paste(text) => self.on_paste(&text),
            Event::Mouse(mouse) => {
                match mouse.kind {
                    MouseEventKind::ScrollUp => self.scroll_by(WHEEL_ROWS as isize),
                    MouseEventKind::ScrollDown => self.scroll_by(-(WHEEL_ROWS as isize)),
                    _ => {}
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn scroll_by(&mut self, rows: isize) {
        if let Some(tab) = self.tabs.get_mut(self.current) {
            tab.scroll = tab.scroll.saturating_add_signed(rows);
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let editor = &mut self.input;
        match key.code {
            KeyCode::Enter => return self.submit(),
            KeyCode::Char('c') if ctrl => return vec![Action::Quit],
            KeyCode::Char('d') if ctrl && editor.is_empty() => return vec![Action::Quit],
            KeyCode::Char('a') if ctrl => editor.home(),
            KeyCode::Char('e') if ctrl => editor.end(),
            KeyCode::Char('w') if ctrl => editor.delete_word_before(),
            KeyCode::Char('u') if ctrl => editor.delete_to_start(),
            KeyCode::Char('k') if ctrl => editor.delete_to_end(),
            KeyCode::Char('n') if ctrl => return self.switch_by(1),
            KeyCode::Char('p') if ctrl => return self.switch_by(-1),
            KeyCode::Char(digit @ '1'..='9') if alt => {
                return self
                    .switch_to(digit as usize - '1' as usize)
                    .into_iter()
                    .collect();
            }
            KeyCode::Left if alt => return self.switch_by(-1),
            KeyCode::Right if alt => return self.switch_by(1),
            KeyCode::Left if ctrl => editor.word_left(),
            KeyCode::Right if ctrl => editor.word_right(),
            KeyCode::Char(c) if !ctrl && !alt => editor.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Backspace => editor.backspace(),
            KeyCode::Delete => editor.delete(),
            KeyCode::Left => editor.left(),
            KeyCode::Right => editor.right(),
            KeyCode::Home => editor.home(),
            KeyCode::End => editor.end(),
            KeyCode::Up => editor.history_back(),
            KeyCode::Down => editor.history_forward(),
            KeyCode::PageUp => self.scroll_by(self.page_rows.max(2) as isize - 1),
            KeyCode::PageDown => self.scroll_by(1 - self.page_rows.max(2) as isize),
            KeyCode::Tab => {
                let nicks = self
                    .current_tab()
                    .map(|tab| tab.members.clone())
                    .unwrap_or_default();
                self.input.complete(&nicks);
            }
            _ => {}
        }
        Vec::new()
    }

    fn switch_by(&mut self, step: isize) -> Vec<Action> {
        if self.tabs.is_empty() {
            return Vec::new();
        }
        let count = self.tabs.len() as isize;
        let next = (self.current as isize + step).rem_euclid(count) as usize;
        self.switch_to(next).into_iter().collect()
    }

    /// Several lines pasted at once: each complete line is sent; the last,
    /// unfinished one stays in the input to be edited.
    fn on_paste(&mut self, text: &str) -> Vec<Action> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut lines: Vec<&str> = text.split('\n').collect();
        let unfinished = lines.pop().unwrap_or_default();
        let mut actions = Vec::new();
        for line in lines {
            self.input.insert(line);
            actions.extend(self.submit());
        }
        self.input.insert(unfinished);
        actions
    }

    /// Enter: the typed line as a command for the server, with the current
    /// tab filled in where the line names no room.
    fn submit(&mut self) -> Vec<Action> {
        let line = self.input.take();
        if let Some(tab) = self.tabs.get_mut(self.current) {
            tab.scroll = 0;
        }
        let command = match parse_line(&line) {
            Ok(Some(command)) => command,
            Ok(None) => return Vec::new(),
            Err(error) => {
                self.system(&format!("! {error}"));
                return Vec::new();
            }
        };
        let room = self.current_room().map(str::to_string);
        let command = match command {
            ClientCommand::Quit { .. } => return vec![Action::Quit],
            ClientCommand::Say { text, room: None } if room.is_none() => {
                // The private tab: to whoever we last talked with.
                match self.last_private.clone() {
                    Some(to) => ClientCommand::Msg { to, text },
                    None => {
                        self.system("! nobody to reply to yet: /msg NICK TEXT");
                        return Vec::new();
                    }
                }
            }
            ClientCommand::Say { text, room: None } => ClientCommand::Say { text, room },
            ClientCommand::Me { text, room: None } => ClientCommand::Me { text, room },
            ClientCommand::Part { room: None, reason } => ClientCommand::Part { room, reason },
            ClientCommand::Who { room: None } => ClientCommand::Who { room },
            command => command,
        };
        vec![Action::Send(command)]
    }
}

/// A notice of several lines becomes several entries.
fn split_lines(entry: Entry) -> Vec<Entry> {
    let (text, error) = match &entry.kind {
        EntryKind::System(text) => (text.clone(), false),
        EntryKind::Error(text) => (text.clone(), true),
        _ => return vec![entry],
    };
    text.lines()
        .map(|line| Entry {
            kind: if error {
                EntryKind::Error(line.to_string())
            } else {
                EntryKind::System(line.to_string())
            },
            ..entry.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;

    pub(crate) fn record(id: u64, room: &str, from: &str, text: &str) -> MessageRecord {
        MessageRecord {
            id,
            room: room.into(),
            from: from.into(),
            text: text.into(),
            time: 1_700_000_000_000 + id * 60_000,
            action: false,
            notice: false,
            ticket: None,
        }
    }

    fn welcomed() -> App {
        let mut app = App::new("127.0.0.1:8888", "tcp", Theme::default());
        app.apply(ServerEvent::Welcome {
            server: "sockchat".into(),
            nick: "me".into(),
            room: "lobby".into(),
            members: vec!["me".into(), "alice".into()],
            count: 2,
        });
        app
    }

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    #[test]
    fn messages_land_in_their_room_and_count_as_unread_elsewhere() {
        let mut app = welcomed();
        app.apply(ServerEvent::Join {
            room: "rust".into(),
            nick: "me".into(),
        });
        assert_eq!(app.current_room(), Some("rust"));
        app.apply(ServerEvent::Message(record(1, "lobby", "alice", "hi")));
        app.apply(ServerEvent::Message(record(
            2, "lobby", "alice", "hi again",
        )));
        app.apply(ServerEvent::Message(record(3, "rust", "alice", "here")));
        assert_eq!(app.tabs[0].unread, 2);
        assert_eq!(app.tabs[1].unread, 0);
        assert_eq!(
            app.switch_to(0),
            Some(Action::Send(ClientCommand::Join {
                room: "lobby".into()
            }))
        );
        assert_eq!(app.tabs[0].unread, 0);
    }

    #[test]
    fn the_first_welcome_shows_its_room_even_after_early_notices() {
        let mut app = App::new("s", "tcp", Theme::default());
        app.system("a notice before the welcome");
        app.apply(ServerEvent::Welcome {
            server: "s".into(),
            nick: "me".into(),
            room: "lobby".into(),
            members: vec![],
            count: 1,
        });
        assert_eq!(app.current_room(), Some("lobby"));
    }

    #[test]
    fn history_after_a_reconnect_fills_gaps_without_repeating() {
        let mut app = welcomed();
        app.apply(ServerEvent::Message(record(1, "lobby", "alice", "one")));
        app.apply(ServerEvent::Message(record(4, "lobby", "alice", "four")));
        app.apply(ServerEvent::History {
            room: "lobby".into(),
            messages: (1..=5)
                .map(|id| record(id, "lobby", "alice", &id.to_string()))
                .collect(),
        });
        let ids: Vec<u64> = app.tabs[0]
            .entries
            .iter()
            .filter_map(|entry| match entry.kind {
                EntryKind::Message { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn text_is_sent_to_the_current_tab_and_private_replies_go_back() {
        let mut app = welcomed();
        for c in "hello".chars() {
            app.on_terminal(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.on_terminal(key(KeyCode::Enter)),
            [Action::Send(ClientCommand::Say {
                text: "hello".into(),
                room: Some("lobby".into())
            })]
        );
        app.apply(ServerEvent::Private {
            from: "alice".into(),
            to: "me".into(),
            text: "psst".into(),
            time: 0,
            notice: false,
        });
        assert_eq!(app.tabs[1].name, PRIVATE);
        assert_eq!(app.tabs[1].unread, 1);
        app.switch_to(1);
        app.input.insert("back at you");
        assert_eq!(
            app.on_terminal(key(KeyCode::Enter)),
            [Action::Send(ClientCommand::Msg {
                to: "alice".into(),
                text: "back at you".into()
            })]
        );
    }

    #[test]
    fn a_paste_of_several_lines_sends_each_and_keeps_the_last_for_editing() {
        let mut app = welcomed();
        let actions = app.on_terminal(Event::Paste("one\r\ntwo\nthr".into()));
        assert_eq!(actions.len(), 2);
        assert_eq!(app.input.text(), "thr");
    }

    #[test]
    fn quitting_and_scrolling_keys() {
        let mut app = welcomed();
        app.input.insert("/quit");
        assert_eq!(app.on_terminal(key(KeyCode::Enter)), [Action::Quit]);
        app.page_rows = 10;
        app.on_terminal(key(KeyCode::PageUp));
        assert_eq!(app.tabs[0].scroll, 9);
        app.on_terminal(key(KeyCode::PageDown));
        assert_eq!(app.tabs[0].scroll, 0);
        let wheel = |kind| {
            Event::Mouse(crossterm::event::MouseEvent {
                kind,
                column: 0,
                row: 0,
                modifiers: KeyModifiers::NONE,
            })
        };
        app.on_terminal(wheel(MouseEventKind::ScrollUp));
        app.on_terminal(wheel(MouseEventKind::ScrollUp));
        assert_eq!(app.tabs[0].scroll, 2 * WHEEL_ROWS);
        app.on_terminal(wheel(MouseEventKind::ScrollDown));
        assert_eq!(app.tabs[0].scroll, WHEEL_ROWS);
    }

    #[test]
    fn leaving_members_are_taken_off_the_list_and_said_so() {
        let mut app = welcomed();
        app.apply(ServerEvent::Leave {
            room: "lobby".into(),
            nick: "alice".into(),
            reason: LeaveReason::Lost,
            detail: None,
        });
        assert_eq!(app.tabs[0].members, ["me"]);
        assert_eq!(
            app.tabs[0].entries.last().unwrap().kind,
            EntryKind::System("alice lost the connection".into())
        );
        app.apply(ServerEvent::Leave {
            room: "lobby".into(),
            nick: "me".into(),
            reason: LeaveReason::Part,
            detail: None,
        });
        assert!(app.tabs.iter().all(|tab| tab.name != "lobby"));
    }

    #[test]
    fn nick_changes_follow_members_and_me() {
        let mut app = welcomed();
        app.apply(ServerEvent::Nick {
            old: "me".into(),
            new: "小明".into(),
        });
        assert_eq!(app.nick, "小明");
        assert!(app.tabs[0].members.contains(&"小明".to_string()));
    }
}
