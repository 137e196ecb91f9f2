//! The word filter: rewrites words in every relayed message, whichever door
//! it came in by (the classic server turned `sb` into `alexsb`).

use std::borrow::Cow;
use std::str::FromStr;

/// One `FROM=TO` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    from: String,
    to: String,
}

impl std::fmt::Display for FilterRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.from, self.to)
    }
}

impl FromStr for FilterRule {
    type Err = String;

    /// Parses `FROM=TO`; `TO` may be empty (the word is removed).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        match spec.split_once('=') {
            Some((from, to)) if !from.is_empty() => Ok(FilterRule {
                from: from.to_string(),
                to: to.to_string(),
            }),
            _ => Err(format!(
                "a filter is FROM=TO with a non-empty FROM, not {spec:?}"
            )),
        }
    }
}

/// The rules, applied in order, each to every occurrence (case-sensitive,
/// like the classic `str.replace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordFilter {
    rules: Vec<FilterRule>,
}

impl WordFilter {
    /// A filter applying `rules` in order.
    pub fn new(rules: Vec<FilterRule>) -> Self {
        WordFilter { rules }
    }

    /// Rewrites `text`; borrows it back untouched when no rule matches.
    ///
    /// ```
    /// use sockchat::hub::{FilterRule, WordFilter};
    /// let filter = WordFilter::new(vec!["sb=alexsb".parse().unwrap()]);
    /// assert_eq!(filter.apply("you sb"), "you alexsb");
    /// ```
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for rule in &self.rules {
            if text.contains(&rule.from) {
                text = Cow::Owned(text.replace(&rule.from, &rule.to));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order_to_every_occurrence() {
        let filter = WordFilter::new(vec!["sb=alexsb".parse().unwrap(), "坏=好".parse().unwrap()]);
        assert_eq!(filter.apply("sb and sb 坏"), "alexsb and alexsb 好");
        assert!(matches!(filter.apply("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!("=x".parse::<FilterRule>().is_err());
        assert!("nothing".parse::<FilterRule>().is_err());
        assert!("gone=".parse::<FilterRule>().is_ok());
    }
}
