//! Colours: defaults, and `[connect.colors]` from the config file.

use std::str::FromStr;

use ratatui::style::Color;

use crate::cli::ColorNames;

/// The colours the screen is drawn with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub own: Color,
    pub system: Color,
    pub private: Color,
    pub error: Color,
    pub status: Color,
    pub nicks: Vec<Color>,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            own: Color::LightYellow,
            system: Color::DarkGray,
            private: Color::LightMagenta,
            error: Color::LightRed,
            status: Color::Blue,
            nicks: vec![
                Color::LightCyan,
                Color::LightGreen,
                Color::LightBlue,
                Color::Cyan,
                Color::Green,
                Color::Magenta,
                Color::Yellow,
                Color::LightRed,
            ],
        }
    }
}

impl Theme {
    /// The default theme with `names` applied; a name that is not a colour
    /// is an error that says which.
    pub fn from_names(names: &ColorNames) -> anyhow::Result<Theme> {
        let mut theme = Theme::default();
        let parse = |name: &str| {
            Color::from_str(name).map_err(|_| anyhow::anyhow!("{name:?} is not a colour"))
        };
        for (name, slot) in [
            (&names.own, &mut theme.own),
            (&names.system, &mut theme.system),
            (&names.private, &mut theme.private),
            (&names.error, &mut theme.error),
            (&names.status, &mut theme.status),
        ] {
            if let Some(name) = name {
                *slot = parse(name)?;
            }
        }
        if let Some(nicks) = &names.nicks {
            theme.nicks = nicks
                .iter()
                .map(|name| parse(name))
                .collect::<Result<_, _>>()?;
            if theme.nicks.is_empty() {
                anyhow::bail!("nicks needs at least one colour");
            }
        }
        Ok(theme)
    }

    /// The colour of someone else's nick: the same for the same nick (in
    /// any case) in every session.
    pub fn nick_color(&self, nick: &str) -> Color {
        // FNV-1a: stable across runs and builds, unlike std's hasher.
        let hash = nick
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        self.nicks[(hash % self.nicks.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_override_defaults_and_bad_names_are_reported() {
        let names = ColorNames {
            own: Some("#ff8800".into()),
            nicks: Some(vec!["red".into(), "light-blue".into()]),
            ..ColorNames::default()
        };
        let theme = Theme::from_names(&names).unwrap();
        assert_eq!(theme.own, Color::Rgb(0xff, 0x88, 0x00));
        assert_eq!(theme.nicks, [Color::Red, Color::LightBlue]);
        assert_eq!(theme.system, Theme::default().system);
        let bad = ColorNames {
            system: Some("sparkly".into()),
            ..ColorNames::default()
        };
        let error = Theme::from_names(&bad).unwrap_err();
        assert!(error.to_string().contains("\"sparkly\" is not a colour"));
    }

    #[test]
    fn a_nick_keeps_its_colour_in_any_case() {
        let theme = Theme::default();
        assert_eq!(theme.nick_color("Alice"), theme.nick_color("alice"));
    }
}
