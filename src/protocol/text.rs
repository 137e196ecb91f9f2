//! Rules for text that crosses from one person to another: control
//! characters made inert, and what a valid nickname or room name is.

use std::borrow::Cow;

/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 24;
/// Longest room name, in characters (without the leading `#`).
pub const MAX_ROOM_CHARS: usize = 32;

/// Makes text safe to show on someone else's terminal.
///
/// C0 controls (tab aside) become their visible Unicode "control picture"
/// (ESC shows as `␛`), DEL becomes `␡`, and C1 controls and the
/// bidirectional embedding, override and isolate characters become U+FFFD,
/// so no escape sequence or reordering trick reaches a terminal raw. Every
/// other character, Chinese and emoji included, passes untouched.
///
/// ```
/// use sockchat::protocol::text::sanitize;
/// assert_eq!(sanitize("你好 👋"), "你好 👋");
/// assert_eq!(sanitize("\x1b[2Jgone"), "␛[2Jgone");
/// ```
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !has_unsafe_bytes(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(replacement).collect())
}

/// Whether `needs_replacing` holds for some character of `utf8`, checked
/// on the bytes: every relayed message goes through here, and nearly all
/// are clean, so the check is a byte scan rather than a char decode.
fn has_unsafe_bytes(utf8: &[u8]) -> bool {
    // A branch-free first pass the compiler turns into SIMD: no byte that
    // could start anything unsafe means clean.
    let suspects = utf8.iter().fold(false, |found, &byte| {
        found | (byte < 0x20) | (byte == 0x7f) | (byte == 0xc2) | (byte == 0xe2)
    });
    suspects
        && utf8.iter().enumerate().any(|(at, byte)| match byte {
            b'\t' => false,
            0x00..=0x1f | 0x7f => true,
            // C1 controls, U+0080..U+009F.
            0xc2 => matches!(utf8.get(at + 1), Some(0x80..=0x9f)),
            // U+202A..U+202E and U+2066..U+2069.
            0xe2 => matches!(
                (utf8.get(at + 1), utf8.get(at + 2)),
                (Some(0x80), Some(0xaa..=0xae)) | (Some(0x81), Some(0xa6..=0xa9))
            ),
            _ => false,
        })
}

fn needs_replacing(c: char) -> bool {
    (c.is_control() && c != '\t') || is_bidi_control(c)
}

fn replacement(c: char) -> char {
    match c {
        '\t' => c,
        '\0'..='\x1f' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'),
        '\x7f' => '\u{2421}',
        c if needs_replacing(c) => '\u{FFFD}',
        c => c,
    }
}

/// Embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069):
/// they can make text display in an order other than the one it was sent in.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a nickname: 1 to 24 letters (any script), digits, `-`, `_` or `.`,
/// not starting with `-` or `.`.
pub fn validate_nick(nick: &str) -> Result<(), String> {
    let count = nick.chars().count();
    if count == 0 || count > MAX_NICK_CHARS {
        return Err(format!("a nickname has 1 to {MAX_NICK_CHARS} characters"));
    }
    if nick.starts_with(['-', '.']) {
        return Err("a nickname cannot start with '-' or '.'".into());
    }
    // IRC's specials too (`[bot]`, `away|nick`): nicks are shared with
    // the IRC door, whose clients pick them.
    if let Some(bad) = nick.chars().find(|c| {
        !(c.is_alphanumeric()
            || matches!(
                c,
                '-' | '_' | '.' | '[' | ']' | '\\' | '`' | '^' | '{' | '|' | '}'
            ))
    }) {
        return Err(format!(
            "a nickname may hold letters, digits and - _ . [ ] \\ ` ^ {{ | }}, not {:?}",
            bad
        ));
    }
    Ok(())
}

/// Turns a room name as typed (`#Rust`, `rust`) into its canonical form
/// (`rust`), or explains why it is not a room name.
pub fn normalize_room(name: &str) -> Result<String, String> {
    let bare = name.strip_prefix('#').unwrap_or(name);
    // `~` first: an ephemeral room (see [`is_ephemeral`]).
    let rest = bare.strip_prefix(EPHEMERAL).unwrap_or(bare);
    let count = bare.chars().count();
    if count == 0 || count > MAX_ROOM_CHARS {
        return Err(format!("a room name has 1 to {MAX_ROOM_CHARS} characters"));
    }
    if rest.is_empty() {
        return Err("a room name has a character after its '~'".to_string());
    }
    if let Some(bad) = rest
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "a room name may hold letters, digits, '-', '_' and '.', not {:?}",
            bad
        ));
    }
    Ok(bare.to_lowercase())
}

/// What an ephemeral room's name starts with.
pub const EPHEMERAL: char = '~';

/// Whether `room` (normalized) is ephemeral: its messages reach whoever
/// is in it and are never stored (a load test's room, say).
pub fn is_ephemeral(room: &str) -> bool {
    room.starts_with(EPHEMERAL)
}

/// The key under which a nickname is unique: nicknames that look the same
/// are the same person. Case does not count (`Alice` is `alice`), nor do
/// compatibility forms (full-width `ａｌｉｃｅ`, NFKC), nor characters of
/// another script that look alike (Cyrillic `аlice`: the UTS #39 skeleton).
/// Every script may still be used: `小明` and `小红` stay two people.
pub fn nick_key(nick: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded = nick.nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&folded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_scan_agrees_with_the_character_rule_everywhere() {
        for code in (0..=0x10FFFF).filter_map(char::from_u32) {
            let mut utf8 = [0; 4];
            let text = code.encode_utf8(&mut utf8);
            assert_eq!(
                has_unsafe_bytes(text.as_bytes()),
                needs_replacing(code),
                "U+{:04X}",
                code as u32
            );
        }
    }

    #[test]
    fn controls_become_visible_and_inert() {
        assert_eq!(sanitize("a\tb"), "a\tb");
        assert_eq!(sanitize("bell\x07"), "bell␇");
        assert_eq!(sanitize("del\x7f"), "del␡");
        assert_eq!(sanitize("c1\u{9b}31m"), "c1\u{FFFD}31m");
        assert_eq!(sanitize("evil\u{202E}txt.exe"), "evil\u{FFFD}txt.exe");
        assert_eq!(sanitize("iso\u{2066}x\u{2069}"), "iso\u{FFFD}x\u{FFFD}");
    }

    #[test]
    fn other_scripts_pass_intact() {
        for text in [
            "中文聊天",
            "こんにちは",
            "مرحبا",
            "emoji 🎉👍🏽",
            "é (e + \u{301})",
        ] {
            assert!(matches!(sanitize(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn nicknames() {
        assert!(validate_nick("alice").is_ok());
        assert!(validate_nick("小明").is_ok());
        assert!(validate_nick("bob_2.0").is_ok());
        assert!(validate_nick("[bot]^`{a|b}\\").is_ok());
        assert!(validate_nick("#chan").is_err());
        assert!(validate_nick("a!b@c").is_err());
        assert!(validate_nick("").is_err());
        assert!(validate_nick("a b").is_err());
        assert!(validate_nick("-x").is_err());
        assert!(validate_nick("esc\x1b").is_err());
        assert!(validate_nick(&"x".repeat(25)).is_err());
        assert_eq!(nick_key("ALICE"), nick_key("alice"));
    }

    #[test]
    fn look_alike_nicks_have_one_key() {
        let alice = nick_key("alice");
        for same in ["Alice", "ALICE", "аlice", "ａｌｉｃｅ", "alicе"] {
            assert_eq!(nick_key(same), alice, "{same:?}");
        }
        assert_ne!(nick_key("alicia"), alice);
        assert_ne!(nick_key("小明"), nick_key("小红"));
        assert_eq!(nick_key("小明"), nick_key("小明"));
        assert_ne!(nick_key("bob"), nick_key("rob"));
    }

    #[test]
    fn rooms() {
        assert_eq!(normalize_room("#Rust").unwrap(), "rust");
        assert_eq!(normalize_room("聊天室").unwrap(), "聊天室");
        assert!(normalize_room("#").is_err());
        assert!(normalize_room("a/b").is_err());
        // A leading `~`: ephemeral, never stored.
        assert_eq!(normalize_room("#~Bench").unwrap(), "~bench");
        assert!(is_ephemeral("~bench") && !is_ephemeral("bench"));
        assert!(normalize_room("~").is_err());
        assert!(normalize_room("a~b").is_err());
        assert!(normalize_room("~~b").is_err());
    }
}
