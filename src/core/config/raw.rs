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
