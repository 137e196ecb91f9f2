//! Drawing an `App`: rooms on the left, messages in the middle, members on
//! the right (side panes only when the terminal is wide enough), then the
//! status line and the input line.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, Paragraph, Wrap};
use ratatui::Frame;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::app::{App, Entry, EntryKind, Link, PRIVATE};
use crate::client::Protection;

/// Narrower than this, only the messages pane is shown.
const SIDE_PANES_FROM: u16 = 72;
const ROOMS_WIDTH: u16 = 18;
const MEMBERS_WIDTH: u16 = 18;
const PROMPT: &str = "> ";

pub fn draw(frame: &mut Frame, app: &mut App) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let messages = if main.width >= SIDE_PANES_FROM {
        let [rooms, messages, members] = Layout::horizontal([
            Constraint::Length(ROOMS_WIDTH),
            Constraint::Min(20),
            Constraint::Length(MEMBERS_WIDTH),
        ])
        .areas(main);
        draw_rooms(frame, app, rooms);
        draw_members(frame, app, members);
        messages
    } else {
        main
    };
    draw_messages(frame, app, messages);
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_rooms(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .tabs
        .iter()
        .enumerate()
        .map(|(index, tab)| {
            let name = if tab.name == PRIVATE {
                PRIVATE.to_string()
            } else {
                format!("#{}", tab.name)
            };
            let mut spans = vec![Span::raw(name)];
            if tab.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", tab.unread),
                    Style::new().add_modifier(Modifier::BOLD),
                ));
            }
            let style = if index == app.current {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            ListItem::new(Line::from(spans)).style(style)
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::bordered().title(" rooms ")),
        area,
    );
}

fn draw_members(frame: &mut Frame, app: &App, area: Rect) {
    let Some(tab) = app.current_tab().filter(|tab| tab.name != PRIVATE) else {
        frame.render_widget(Block::bordered().title(" members "), area);
        return;
    };
    let mut items = Vec::new();
    if tab.count > tab.members.len() {
        // A big room: the server sends a count, not the list.
        items.push(ListItem::new(Span::styled(
            "/who lists them",
            Style::new().fg(app.theme.system),
        )));
    }
    items.extend(tab.members.iter().map(|nick| {
        let style = if *nick == app.nick {
            Style::new().fg(app.theme.own).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(app.theme.nick_color(nick))
        };
        ListItem::new(Span::styled(nick.clone(), style))
    }));
    let title = format!(" members ({}) ", tab.count.max(tab.members.len()));
    frame.render_widget(List::new(items).block(Block::bordered().title(title)), area);
}

fn draw_messages(frame: &mut Frame, app: &mut App, area: Rect) {
    let Some(tab) = app.tabs.get(app.current) else {
        frame.render_widget(Block::bordered(), area);
        return;
    };
    let mut title = if tab.name == PRIVATE {
        " private ".to_string()
    } else {
        format!(" #{} ", tab.name)
    };
    if tab.scroll > 0 {
        title.push_str("(scrolled up; PageDown to return) ");
    }
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (width, height) = (inner.width as usize, inner.height as usize);
    app.page_rows = height;
    if width == 0 || height == 0 {
        return;
    }

    // From the newest line back until the screen (and the scroll) is
    // filled: only those are laid out.
    let tab = &app.tabs[app.current];
    let mut lines = Vec::new();
    let mut rows = 0;
    for entry in tab.entries.iter().rev() {
        let line = entry_line(app, entry);
        rows += Paragraph::new(line.clone())
            .wrap(Wrap { trim: false })
            .line_count(width as u16);
        lines.push(line);
        if rows >= height + tab.scroll {
            break;
        }
    }
    lines.reverse();
    // Scrolled past the oldest line: stop there.
    let scroll = tab.scroll.min(rows.saturating_sub(height));
    let skip = rows.saturating_sub(height + scroll);
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((skip.min(u16::MAX as usize) as u16, 0));
    frame.render_widget(paragraph, inner);
    app.tabs[app.current].scroll = scroll;
}

/// One entry as a line of styled spans. Every text in it has been
/// sanitised already (see `App`), so nothing in it can move the cursor.
fn entry_line<'a>(app: &App, entry: &'a Entry) -> Line<'a> {
    let theme = &app.theme;
    let mut spans = Vec::new();
    if let Some(time) = entry.time {
        spans.push(Span::styled(
            format!("{} ", clock(time, app.utc_offset)),
            Style::new().fg(theme.system),
        ));
    }
    if entry.history {
        spans.push(Span::styled("(history) ", Style::new().fg(theme.system)));
    }
    match &entry.kind {
        EntryKind::Message {
            from,
            text,
            action,
            notice,
            own,
            ..
        } => {
            let nick_style = if *own {
                Style::new().fg(theme.own).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
                    .fg(theme.nick_color(from))
                    .add_modifier(Modifier::BOLD)
            };
            if *action {
                spans.push(Span::styled(
                    "* ",
                    Style::new().add_modifier(Modifier::ITALIC),
                ));
                spans.push(Span::styled(from.as_str(), nick_style));
                spans.push(Span::styled(
                    format!(" {text}"),
                    Style::new().add_modifier(Modifier::ITALIC),
                ));
            } else if *notice {
                spans.push(Span::styled(format!("-{from}- "), nick_style));
                spans.push(Span::raw(text.as_str()));
            } else {
                spans.push(Span::styled(from.as_str(), nick_style));
                spans.push(Span::raw(": "));
                spans.push(Span::raw(text.as_str()));
            }
        }
        EntryKind::Private {
            from,
            to,
            text,
            notice,
        } => {
            let from = if *notice {
                format!("-{from}-")
            } else {
                from.clone()
            };
            spans.push(Span::styled(
                format!("[private] {from} -> {to}: {text}"),
                Style::new().fg(theme.private),
            ))
        }
        EntryKind::System(text) => spans.push(Span::styled(
            format!("* {text}"),
            Style::new().fg(theme.system),
        )),
        EntryKind::Error(text) => spans.push(Span::styled(
            format!("! {text}"),
            Style::new().fg(theme.error),
        )),
    }
    let line = Line::from(spans);
    if entry.history {
        line.style(Style::new().add_modifier(Modifier::DIM))
    } else {
        line
    }
}

/// `HH:MM` of a time in ms since the epoch, shifted by `utc_offset` seconds.
fn clock(millis: u64, utc_offset: i64) -> String {
    let seconds = (millis / 1000) as i64 + utc_offset;
    let of_day = seconds.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let state = match &app.link {
        Link::Connecting => "connecting".to_string(),
        Link::Connected => "connected".to_string(),
        Link::Reconnecting { attempt, at } => {
            let wait = at.saturating_duration_since(std::time::Instant::now());
            format!("reconnecting in {}s (try {attempt})", wait.as_secs() + 1)
        }
    };
    let room = match app.current_tab() {
        Some(tab) if tab.name == PRIVATE => PRIVATE.to_string(),
        Some(tab) => format!("#{}", tab.name),
        None => "-".to_string(),
    };
    let rtt = app
        .rtt
        .map(|rtt| format!(" │ rtt {:.1} ms", rtt.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    let lock = match &app.protection {
        Some(Protection::Tls { fingerprint }) => format!(" 🔒 {}", short_fingerprint(fingerprint)),
        Some(Protection::Unchecked) => " ⚠ TLS unchecked (--insecure)".to_string(),
        None => String::new(),
    };
    let text = format!(
        " {} {}{lock} │ {} │ {room} │ {state}{rtt}",
        app.server, app.door, app.nick
    );
    let style = Style::new().bg(app.theme.status).fg(Color::White);
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// The start of a fingerprint, enough to compare by eye with what the
/// server prints: `sha256:5b39b767a12f26bb…`.
fn short_fingerprint(fingerprint: &str) -> String {
    const SHOWN: usize = "sha256:".len() + 16;
    match fingerprint.get(..SHOWN) {
        Some(start) if fingerprint.len() > SHOWN => format!("{start}…"),
        _ => fingerprint.to_string(),
    }
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let text = app.input.text();
    let available = (area.width as usize)
        .saturating_sub(PROMPT.len() + 1)
        .max(1);
    // Scrolled sideways so the cursor stays in view, by whole graphemes.
    let before_cursor = app.input.cursor_columns();
    let mut start = 0;
    let mut hidden = 0;
    for grapheme in text.graphemes(true) {
        if before_cursor - hidden < available {
            break;
        }
        hidden += grapheme.width();
        start += grapheme.len();
    }
    let line = Line::from(vec![Span::raw(PROMPT), Span::raw(&text[start..])]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area.x as usize + PROMPT.len() + before_cursor - hidden;
    frame.set_cursor_position((x.min(u16::MAX as usize) as u16, area.y));
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::client::tui::theme::Theme;
    use crate::protocol::{MessageRecord, ServerEvent};

    /// The screen's text, row by row (wide characters once, not followed
    /// by the blank cell they cover).
    fn rows(terminal: &Terminal<TestBackend>) -> Vec<String> {
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                let mut row = String::new();
                let mut skip = 0;
                for x in 0..buffer.area.width {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let symbol = buffer[(x, y)].symbol();
                    skip = symbol.width().saturating_sub(1);
                    row.push_str(symbol);
                }
                row.trim_end().to_string()
            })
            .collect()
    }

    fn message(id: u64, from: &str, text: &str) -> ServerEvent {
        ServerEvent::Message(MessageRecord {
            id,
            room: "lobby".into(),
            from: from.into(),
            text: text.into(),
            // 12:34 UTC plus a minute per id.
            time: (12 * 3600 + 34 * 60 + id * 60) * 1000,
            action: false,
            notice: false,
            ticket: None,
        })
    }

    fn app() -> App {
        let mut app = App::new("127.0.0.1:8888", "tcp", Theme::default());
        app.apply(ServerEvent::Welcome {
            server: "sockchat".into(),
            nick: "me".into(),
            room: "lobby".into(),
            members: vec!["me".into(), "小明".into()],
            count: 2,
        });
        app.apply(ServerEvent::History {
            room: "lobby".into(),
            messages: vec![match message(1, "小明", "早上好") {
                ServerEvent::Message(record) => record,
                _ => unreachable!(),
            }],
        });
        app.apply(message(
            2,
            "小明",
            "今天天气很好，我们去公园散步吧，好不好？",
        ));
        app.apply(message(3, "me", "ok \u{1b}[2J 👍"));
        app.apply(ServerEvent::Join {
            room: "lobby".into(),
            nick: "bob".into(),
        });
        app.input.insert("typing 你好");
        app
    }

    #[test]
    fn a_known_sequence_of_events_draws_this_screen() {
        let mut terminal = Terminal::new(TestBackend::new(80, 12)).unwrap();
        let mut app = app();
        terminal.draw(|frame| draw(frame, &mut app)).unwrap();
        let expected = [
            "┌ rooms ─────────┐┌ #lobby ──────────────────────────────────┐┌ members (3) ───┐",
            "│#lobby          ││* connected to sockchat as me             ││me              │",
            "│                ││12:35 (history) 小明: 早上好              ││小明            │",
            "│                ││12:36 小明:                               ││bob             │",
            "│                ││今天天气很好，我们去公园散步吧，好不好？  ││                │",
            "│                ││12:37 me: ok ␛[2J 👍                      ││                │",
            "│                ││* bob joined #lobby                       ││                │",
            "│                ││                                          ││                │",
            "│                ││                                          ││                │",
            "└────────────────┘└──────────────────────────────────────────┘└────────────────┘",
            " 127.0.0.1:8888 tcp │ me │ #lobby │ connected",
            "> typing 你好",
        ];
        assert_eq!(rows(&terminal), expected);
        // The cursor sits after the last wide character: 2 + 7 + 4 columns.
        terminal.backend_mut().assert_cursor_position((13, 11));
        // Nicks in colour: mine in the theme's own colour, others by nick.
        let theme = Theme::default();
        let buffer = terminal.backend().buffer();
        assert_eq!(buffer[(25, 5)].symbol(), "m");
        assert_eq!(buffer[(25, 5)].fg, theme.own);
        assert_eq!(buffer[(25, 3)].symbol(), "小");
        assert_eq!(buffer[(25, 3)].fg, theme.nick_color("小明"));
        // History is dim.
        assert!(buffer[(25, 2)].modifier.contains(Modifier::DIM));
    }

    #[test]
    fn a_narrow_terminal_shows_messages_only_and_scrolls() {
        let mut terminal = Terminal::new(TestBackend::new(40, 8)).unwrap();
        let mut app = app();
        terminal.draw(|frame| draw(frame, &mut app)).unwrap();
        let screen = rows(&terminal);
        assert_eq!(screen[0], "┌ #lobby ──────────────────────────────┐");
        assert_eq!(screen[4], "│* bob joined #lobby                   │");
        app.tabs[0].scroll = 2;
        terminal.draw(|frame| draw(frame, &mut app)).unwrap();
        let screen = rows(&terminal);
        assert!(screen[0].contains("scrolled up"), "{screen:?}");
        // Two rows up: the last two lines are below the pane now.
        assert_eq!(screen[1], "│12:35 (history) 小明: 早上好          │");
        assert_eq!(screen[4], "│？                                    │");
        // Scrolling past the oldest line stops there.
        app.tabs[0].scroll = 100;
        terminal.draw(|frame| draw(frame, &mut app)).unwrap();
        assert_eq!(app.tabs[0].scroll, 3);
    }

    #[test]
    fn a_long_input_scrolls_sideways_by_whole_characters() {
        let mut terminal = Terminal::new(TestBackend::new(20, 8)).unwrap();
        let mut app = app();
        app.input.insert(&"字".repeat(20));
        terminal.draw(|frame| draw(frame, &mut app)).unwrap();
        let screen = rows(&terminal);
        let input = &screen[7];
        assert!(input.starts_with("> "), "{input}");
        assert!(input.ends_with('字'), "{input}");
        let position = terminal.get_cursor_position().unwrap();
        assert!(position.x < 20, "{position:?}");
    }

    #[test]
    fn clock_shows_hours_and_minutes_with_the_offset() {
        assert_eq!(clock((12 * 3600 + 34 * 60) * 1000, 0), "12:34");
        assert_eq!(clock(0, 8 * 3600), "08:00");
        assert_eq!(clock(0, -3600), "23:00");
    }
}
