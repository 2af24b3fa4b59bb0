//! Configuration as the host read it: sections of ordered `key = value` entries with their
//! origin, templates and `#include` already resolved by the host's own config loader.

/// One `key = value` (or `key => value`) line.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub key: String,
    pub value: String,
    /// File the line came from (an `#include` may differ from the main file).
    pub file: String,
    pub line: u32,
}

/// One `[name]` section, entries in file order (repeatable keys keep their order).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSection {
    pub name: String,
    pub entries: Vec<RawEntry>,
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawConfig {
    pub file: String,
    /// The file does not exist (not an error: the module runs with no sections).
    pub missing: bool,
    pub sections: Vec<RawSection>,
}

impl RawConfig {
    /// Parses the subset of Asterisk's config syntax tests and tools need: `[section]`,
    /// `key = value`, `key => value`, `;` comments (`\;` for a literal semicolon). (The module itself uses Asterisk's own
    /// loader, which adds templates and `#include`.)
    pub fn parse_text(file: &str, text: &str) -> RawConfig {
        let mut cfg = RawConfig {
            file: file.to_string(),
            missing: false,
            sections: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            // `;` starts a comment; `\;` is a literal semicolon (as in Asterisk's parser).
            let mut kept = String::new();
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&';') => {
                        kept.push(';');
                        chars.next();
                    }
                    ';' => break,
                    c => kept.push(c),
                }
            }
            let line = kept.as_str();
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.split(']').next().unwrap_or("").trim().to_string();
                cfg.sections.push(RawSection {
                    name,
                    entries: Vec::new(),
                });
                continue;
            }
            let (key, value) = match (line.find("=>"), line.find('=')) {
                (Some(a), Some(b)) if a <= b => (&line[..a], &line[a + 2..]),
                (_, Some(b)) => (&line[..b], &line[b + 1..]),
                _ => (line, ""),
            };
            if cfg.sections.is_empty() {
                cfg.sections.push(RawSection {
                    name: String::new(),
                    entries: Vec::new(),
                });
            }
            let section = cfg.sections.last_mut().expect("pushed above");
            section.entries.push(RawEntry {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
                file: file.to_string(),
                line: i as u32 + 1,
            });
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_escapes_and_both_arrows() {
        let c = RawConfig::parse_text(
            "w.conf",
            "[a] ; c\nbody = x\\;y ; comment\nparam => n => v\nk=v\n",
        );
        let e = &c.sections[0].entries;
        assert_eq!(c.sections[0].name, "a");
        assert_eq!(
            (e[0].key.as_str(), e[0].value.as_str(), e[0].line),
            ("body", "x;y", 2)
        );
        assert_eq!(
            (e[1].key.as_str(), e[1].value.as_str()),
            ("param", "n => v")
        );
        assert_eq!((e[2].key.as_str(), e[2].value.as_str()), ("k", "v"));
    }
}
