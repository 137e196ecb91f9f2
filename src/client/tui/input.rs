//! The input line: editing by grapheme (so the cursor never lands inside
//! a wide or combined character), word moves and deletes, history, and Tab
//! completion of nicknames and commands.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Lines kept for Up/Down.
const HISTORY: usize = 500;

/// Commands Tab completes (the server's, and the client's own).
pub const COMMANDS: &[&str] = &[
    "/help", "/history", "/join", "/me", "/msg", "/nick", "/part", "/ping", "/quit", "/rooms",
    "/search", "/who",
];

#[derive(Debug, Default)]
pub struct Editor {
    text: String,
    /// A byte index on a grapheme boundary.
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in `history`; `None` when editing a new line.
    browsing: Option<usize>,
    /// The new line being typed when browsing started.
    draft: String,
    completion: Option<Completion>,
}

/// An ongoing Tab completion: repeated Tabs cycle through `matches`.
#[derive(Debug)]
struct Completion {
    /// Where the completed word starts.
    start: usize,
    matches: Vec<String>,
    next: usize,
}

impl Editor {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Display columns before the cursor.
    pub fn cursor_columns(&self) -> usize {
        self.text[..self.cursor].width()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Inserts at the cursor; a tab becomes a space and other control
    /// characters are dropped, so what is shown is what is sent.
    pub fn insert(&mut self, text: &str) {
        self.completion = None;
        let clean: String = text
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .filter(|c| !c.is_control())
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    pub fn backspace(&mut self) {
        self.completion = None;
        if let Some(start) = self.previous_boundary() {
            self.text.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
    }

    pub fn delete(&mut self) {
        self.completion = None;
        if let Some(end) = self.next_boundary() {
            self.text.replace_range(self.cursor..end, "");
        }
    }

    pub fn left(&mut self) {
        self.completion = None;
        if let Some(start) = self.previous_boundary() {
            self.cursor = start;
        }
    }

    pub fn right(&mut self) {
        self.completion = None;
        if let Some(end) = self.next_boundary() {
            self.cursor = end;
        }
    }

    pub fn home(&mut self) {
        self.completion = None;
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.completion = None;
        self.cursor = self.text.len();
    }

    pub fn word_left(&mut self) {
        self.completion = None;
        self.cursor = self.word_start();
    }

    pub fn word_right(&mut self) {
        self.completion = None;
        let rest = &self.text[self.cursor..];
        let spaces = rest.len() - rest.trim_start().len();
        let word = rest[spaces..]
            .find(char::is_whitespace)
            .unwrap_or(rest.len() - spaces);
        self.cursor += spaces + word;
    }

    /// Ctrl-W: deletes the word before the cursor (and the spaces after it).
    pub fn delete_word_before(&mut self) {
        self.completion = None;
        let start = self.word_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Ctrl-U: deletes everything before the cursor.
    pub fn delete_to_start(&mut self) {
        self.completion = None;
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Ctrl-K: deletes everything after the cursor.
    pub fn delete_to_end(&mut self) {
        self.completion = None;
        self.text.truncate(self.cursor);
    }

    /// Enter: the line, now in the history; the editor is empty again.
    pub fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        self.completion = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        line
    }

    /// Up: the previous line sent.
    pub fn history_back(&mut self) {
        let at = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(at) => at - 1,
        };
        self.browsing = Some(at);
        self.show(self.history[at].clone());
    }

    /// Down: the next line sent, then the line being typed before Up.
    pub fn history_forward(&mut self) {
        let Some(at) = self.browsing else { return };
        if at + 1 < self.history.len() {
            self.browsing = Some(at + 1);
            self.show(self.history[at + 1].clone());
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.show(draft);
        }
    }

    fn show(&mut self, text: String) {
        self.text = text;
        self.cursor = self.text.len();
        self.completion = None;
    }

    /// Tab: completes the word before the cursor, a command if it is the
    /// first word and starts with `/`, otherwise a nickname from `nicks`
    /// (followed by `: ` at the start of the line, as IRC does). Tab again
    /// cycles through the other matches.
    pub fn complete(&mut self, nicks: &[String]) {
        if let Some(completion) = &mut self.completion {
            if completion.matches.len() > 1 {
                completion.next = (completion.next + 1) % completion.matches.len();
                let (start, choice) = (
                    completion.start,
                    completion.matches[completion.next].clone(),
                );
                self.text.replace_range(start..self.cursor, &choice);
                self.cursor = start + choice.len();
            }
            return;
        }
        let start = self.text[..self.cursor]
            .rfind(char::is_whitespace)
            .map_or(0, |space| space + 1);
        let word = &self.text[start..self.cursor];
        if word.is_empty() {
            return;
        }
        let matches: Vec<String> = if start == 0 && word.starts_with('/') {
            COMMANDS
                .iter()
                .filter(|command| command.starts_with(word))
                .map(|command| format!("{command} "))
                .collect()
        } else {
            let lower = word.to_lowercase();
            let suffix = if start == 0 { ": " } else { " " };
            let mut found: Vec<String> = nicks
                .iter()
                .filter(|nick| nick.to_lowercase().starts_with(&lower))
                .map(|nick| format!("{nick}{suffix}"))
                .collect();
            found.sort_by_key(|nick| nick.to_lowercase());
            found.dedup();
            found
        };
        let Some(first) = matches.first().cloned() else {
            return;
        };
        self.text.replace_range(start..self.cursor, &first);
        self.cursor = start + first.len();
        self.completion = Some(Completion {
            start,
            matches,
            next: 0,
        });
    }

    fn previous_boundary(&self) -> Option<usize> {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map(|(start, _)| start)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map(|grapheme| self.cursor + grapheme.len())
    }

    /// Start of the word before the cursor (skipping spaces first).
    fn word_start(&self) -> usize {
        let before = self.text[..self.cursor].trim_end();
        before.rfind(char::is_whitespace).map_or(0, |space| {
            space + before[space..].chars().next().map_or(1, char::len_utf8)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Editor {
        let mut editor = Editor::default();
        editor.insert(text);
        editor
    }

    #[test]
    fn the_cursor_moves_over_wide_and_combined_characters_whole() {
        // 你 is two columns; é here is e + a combining accent; 👍🏽 is an
        // emoji with a skin-tone modifier: one grapheme each.
        let mut editor = typed("a你e\u{301}👍🏽");
        assert_eq!(editor.cursor_columns(), 1 + 2 + 1 + 2);
        editor.left();
        assert_eq!(editor.cursor_columns(), 4);
        editor.left();
        assert_eq!(editor.cursor_columns(), 3);
        editor.left();
        assert_eq!(editor.cursor_columns(), 1);
        editor.backspace();
        assert_eq!(editor.text(), "你e\u{301}👍🏽");
        editor.delete();
        assert_eq!(editor.text(), "e\u{301}👍🏽");
        editor.right();
        editor.insert("x");
        assert_eq!(editor.text(), "e\u{301}x👍🏽");
        // Japanese kana and kanji are two columns each too.
        let mut editor = typed("日本語です");
        editor.word_left();
        assert_eq!(editor.cursor_columns(), 0);
        editor.right();
        editor.right();
        assert_eq!(editor.cursor_columns(), 4);
    }

    #[test]
    fn words_are_moved_over_and_deleted() {
        let mut editor = typed("hello big  world");
        editor.delete_word_before();
        assert_eq!(editor.text(), "hello big  ");
        editor.delete_word_before();
        assert_eq!(editor.text(), "hello ");
        editor.insert("small world");
        editor.word_left();
        editor.word_left();
        assert_eq!(editor.cursor_columns(), "hello ".len());
        editor.word_right();
        assert_eq!(editor.cursor_columns(), "hello small".len());
        editor.delete_to_end();
        assert_eq!(editor.text(), "hello small");
        editor.word_left();
        editor.delete_to_start();
        assert_eq!(editor.text(), "small");
    }

    #[test]
    fn history_goes_back_and_returns_to_the_draft() {
        let mut editor = typed("first");
        editor.take();
        editor.insert("second");
        editor.take();
        editor.insert("draft");
        editor.history_back();
        assert_eq!(editor.text(), "second");
        editor.history_back();
        editor.history_back();
        assert_eq!(editor.text(), "first");
        editor.history_forward();
        editor.history_forward();
        assert_eq!(editor.text(), "draft");
    }

    #[test]
    fn tab_completes_nicks_and_commands_and_cycles() {
        let nicks = vec![
            "Alice".to_string(),
            "albert".to_string(),
            "小明".to_string(),
        ];
        let mut editor = typed("al");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "albert: ");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "Alice: ");
        let mut editor = typed("hi 小");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "hi 小明 ");
        let mut editor = typed("/jo");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "/join ");
        let mut editor = typed("zed");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "zed");
    }
}
