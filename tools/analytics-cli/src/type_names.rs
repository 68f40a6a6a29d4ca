//! Metric types made from what a CSV file holds: a type column's cells, or a
//! wide file's value column names.
//!
//! The API takes types of 1 to 100 characters of `[A-Za-z0-9_.-]`; files
//! published by others name things `Fossil Fuels` or `max temp (°C)`. Unless
//! `--strict-types` is given, such a name is made into a type by one rule:
//!
//! 1. every run of characters outside `[A-Za-z0-9_.-]` (spaces, other
//!    punctuation, letters outside ASCII) becomes one `_`, except at the
//!    start and the end, where it is dropped: `Fossil Fuels` → `Fossil_Fuels`,
//!    ` Wind / Solar ` → `Wind_Solar`, `max temp (°C)` → `max_temp_C`;
//! 2. `--type-prefix` goes before it (the prefix itself must be valid);
//! 3. the whole is cut to 100 characters;
//! 4. a name with nothing left (`%`, `—`) makes no type: its row is refused.
//!
//! A valid name is left as it is, so files that already import are unchanged.
//! Different names can make one type (`a b` and `a/b` are both `a_b`); the
//! dry run lists every name that was changed and the type it became.
//!
//! With `--strict-types` a name is used as it is and an invalid one refused
//! (the message names the type the rule would make).

use std::borrow::Cow;
use std::collections::BTreeMap;

use analytics_core::metric::{validate_type, MAX_TYPE_LEN};

/// Whether names from the file are made valid, or refused when they are not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TypeRule {
    /// The rule in the module doc (the default).
    #[default]
    Normalize,
    /// Names are used as they are (`--strict-types`).
    Strict,
}

/// Why a name makes no type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeNameError {
    #[error("`{name}` has no letter, digit, '_', '.' or '-' to make a type of")]
    NothingLeft { name: String },
    #[error("the type `{metric_type}` {message}{}", .made.as_ref().map(|m| format!(" (without --strict-types it would be `{m}`)")).unwrap_or_default())]
    Invalid { metric_type: String, message: String, made: Option<String> },
    #[error("--type-prefix `{prefix}` {message}")]
    BadPrefix { prefix: String, message: String },
}

/// A character the API takes in a type.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Step 1 of the rule: `name` with each inner run of other characters made
/// one `_` and those at either end dropped; borrowed when nothing changed.
pub fn normalize(name: &str) -> Cow<'_, str> {
    if name.chars().all(allowed) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if !allowed(c) {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push('_');
        }
        gap = false;
        out.push(c);
    }
    Cow::Owned(out)
}

/// Checks a `--type-prefix`: valid characters, and room left for a name.
pub fn check_prefix(prefix: &str) -> Result<(), TypeNameError> {
    let bad = |message: String| Err(TypeNameError::BadPrefix { prefix: prefix.to_string(), message });
    if prefix.chars().count() >= MAX_TYPE_LEN {
        return bad(format!("leaves no room for a name in a type of at most {MAX_TYPE_LEN} characters"));
    }
    if !prefix.chars().all(allowed) {
        return bad("may contain only letters, digits, '_', '.' and '-'".to_string());
    }
    Ok(())
}

/// The type `name` (a trimmed cell, or a column name) makes under `prefix`.
pub fn make_type(prefix: &str, name: &str, rule: TypeRule) -> Result<String, TypeNameError> {
    match rule {
        TypeRule::Strict => {
            let metric_type = format!("{prefix}{name}");
            match validate_type(&metric_type) {
                Ok(()) => Ok(metric_type),
                Err(message) => {
                    let made = make_type(prefix, name, TypeRule::Normalize).ok().filter(|m| *m != metric_type);
                    Err(TypeNameError::Invalid { metric_type, message, made })
                }
            }
        }
        TypeRule::Normalize => {
            let part = normalize(name);
            if part.is_empty() {
                return Err(TypeNameError::NothingLeft { name: name.to_string() });
            }
            let mut metric_type = format!("{prefix}{part}");
            // Cut on a character boundary (the part is ASCII; the prefix need not be).
            if let Some((at, _)) = metric_type.char_indices().nth(MAX_TYPE_LEN) {
                metric_type.truncate(at);
            }
            // Only a bad prefix can still fail here.
            validate_type(&metric_type)
                .map(|()| metric_type.clone())
                .map_err(|message| TypeNameError::Invalid { metric_type, message, made: None })
        }
    }
}

/// Whether [`make_type`] changed `name` (anything but putting the prefix before it).
pub fn changed(prefix: &str, name: &str, metric_type: &str) -> bool {
    metric_type.strip_prefix(prefix) != Some(name)
}

/// The names of one origin that the rule changed, each with the type it
/// made: what a dry run lists. At most [`Renames::LIMIT`] are kept, so
/// memory stays bounded on a file of a million distinct names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Renames {
    /// Where the names come from, as a dry run says it: "column `source`".
    pub origin: String,
    made: BTreeMap<String, String>,
    /// Some changed names were not kept.
    unlisted: bool,
}

impl Renames {
    pub const LIMIT: usize = 1_000;

    pub fn new(origin: impl Into<String>) -> Renames {
        Renames { origin: origin.into(), ..Renames::default() }
    }

    /// Notes that `name` became `metric_type` (call it only when it changed).
    pub fn note(&mut self, name: &str, metric_type: &str) {
        if self.made.contains_key(name) {
            return;
        }
        if self.made.len() >= Self::LIMIT {
            self.unlisted = true;
            return;
        }
        self.made.insert(name.to_string(), metric_type.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// `(name, type)` pairs, by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.made.iter().map(|(n, t)| (n.as_str(), t.as_str()))
    }

    /// The dry run's listing: a heading, then one `name -> type` line each;
    /// nothing when no name was changed.
    pub fn listing(&self) -> Vec<String> {
        if self.made.is_empty() {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "types made from {} ({} name{} changed; --strict-types refuses them instead):",
            self.origin,
            if self.unlisted { format!("over {}", self.made.len()) } else { self.made.len().to_string() },
            if self.made.len() == 1 && !self.unlisted { "" } else { "s" },
        )];
        lines.extend(self.made.iter().map(|(name, metric_type)| format!("  `{name}` -> `{metric_type}`")));
        if self.unlisted {
            lines.push(format!("  ... and more not listed (the first {} are)", Self::LIMIT));
        }
        lines
    }

    /// One line for the end of an import, `None` when no name was changed.
    pub fn brief(&self) -> Option<String> {
        let (name, metric_type) = self.made.iter().next()?;
        let count = if self.unlisted { format!("over {}", self.made.len()) } else { self.made.len().to_string() };
        Some(format!(
            "types made from {}: {count} name(s) changed, such as `{name}` -> `{metric_type}` (--dry-run lists them; --strict-types refuses them instead)",
            self.origin
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(prefix: &str, name: &str) -> Result<String, TypeNameError> {
        make_type(prefix, name, TypeRule::Normalize)
    }

    #[test]
    fn runs_of_other_characters_become_one_underscore_inside_and_nothing_at_the_ends() {
        assert_eq!(normalize("Fossil Fuels"), "Fossil_Fuels");
        assert_eq!(normalize("Nuclear Energy"), "Nuclear_Energy");
        assert_eq!(normalize("  Wind \t/  Solar "), "Wind_Solar");
        assert_eq!(normalize("max temp (°C)"), "max_temp_C");
        assert_eq!(normalize("(total)"), "total");
        assert_eq!(normalize("Café crème"), "Caf_cr_me");
        assert_eq!(normalize("a__b  c"), "a__b_c", "underscores already there are kept");
        assert_eq!(normalize("%"), "");
    }

    #[test]
    fn valid_names_are_left_alone() {
        for name in ["Renewables", "cpu_usage", "stock.MSFT", "a-b.c_d", "42"] {
            assert!(matches!(normalize(name), Cow::Borrowed(n) if n == name), "{name}");
            assert_eq!(made("", name).unwrap(), name);
            assert!(!changed("p.", name, &made("p.", name).unwrap()));
        }
        assert!(changed("", "Fossil Fuels", "Fossil_Fuels"));
    }

    #[test]
    fn the_prefix_goes_first_and_the_whole_is_cut_to_100_characters() {
        assert_eq!(made("iowa.", "Fossil Fuels").unwrap(), "iowa.Fossil_Fuels");
        let long = "word ".repeat(40);
        let metric_type = made("p.", &long).unwrap();
        assert_eq!(metric_type.len(), MAX_TYPE_LEN);
        assert!(metric_type.starts_with("p.word_word_"), "{metric_type}");
        assert!(validate_type(&metric_type).is_ok());
        assert_eq!(made("", &"x".repeat(150)).unwrap(), "x".repeat(MAX_TYPE_LEN));
    }

    #[test]
    fn a_name_with_nothing_left_makes_no_type() {
        for name in ["%", " — ", "°"] {
            let err = made("p.", name).unwrap_err();
            assert_eq!(err, TypeNameError::NothingLeft { name: name.to_string() });
        }
        assert_eq!(made("", "%").unwrap_err().to_string(), "`%` has no letter, digit, '_', '.' or '-' to make a type of");
    }

    #[test]
    fn strict_refuses_what_normalize_would_change_and_says_what_it_would_make() {
        assert_eq!(make_type("s.", "MSFT", TypeRule::Strict).unwrap(), "s.MSFT");
        let err = make_type("", "Fossil Fuels", TypeRule::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the type `Fossil Fuels` may contain only letters, digits, '_', '.' and '-' (without --strict-types it would be `Fossil_Fuels`)"
        );
        let long = make_type("", &"x".repeat(101), TypeRule::Strict).unwrap_err();
        assert!(long.to_string().contains("must be 1 to 100 characters long"), "{long}");
        let nothing = make_type("", "%", TypeRule::Strict).unwrap_err();
        assert_eq!(nothing.to_string(), "the type `%` may contain only letters, digits, '_', '.' and '-'");
    }

    #[test]
    fn prefixes_are_checked_as_given() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("stock.").is_ok());
        assert_eq!(
            check_prefix("my stock.").unwrap_err().to_string(),
            "--type-prefix `my stock.` may contain only letters, digits, '_', '.' and '-'"
        );
        assert!(check_prefix(&"p".repeat(MAX_TYPE_LEN)).is_err());
        assert!(check_prefix(&"p".repeat(MAX_TYPE_LEN - 1)).is_ok());
    }

    #[test]
    fn renames_are_listed_once_each_and_bounded() {
        let mut renames = Renames::new("column `source`");
        assert!(renames.listing().is_empty() && renames.brief().is_none());
        renames.note("Nuclear Energy", "Nuclear_Energy");
        renames.note("Fossil Fuels", "Fossil_Fuels");
        renames.note("Fossil Fuels", "Fossil_Fuels");
        assert_eq!(
            renames.listing(),
            [
                "types made from column `source` (2 names changed; --strict-types refuses them instead):",
                "  `Fossil Fuels` -> `Fossil_Fuels`",
                "  `Nuclear Energy` -> `Nuclear_Energy`",
            ]
        );
        assert!(renames.brief().unwrap().contains("2 name(s) changed, such as `Fossil Fuels` -> `Fossil_Fuels`"));
        let mut many = Renames::new("column `x`");
        for i in 0..Renames::LIMIT + 5 {
            many.note(&format!("n {i}"), &format!("n_{i}"));
        }
        assert_eq!(many.pairs().count(), Renames::LIMIT);
        let listing = many.listing();
        assert!(listing[0].contains("over 1000 names changed"), "{}", listing[0]);
        assert_eq!(listing.last().unwrap(), "  ... and more not listed (the first 1000 are)");
    }
}
