//! Per-section call filters: `called = <regex>`, `caller = <regex>`, `ext = <regex>`.
//!
//! A section hears about a call's event only when every filter it sets matches the whole
//! value of its field at that event (`called = 74951234567|74951234568` is one CRM per phone
//! number). Whole-value, like Asterisk's own pattern matching and unlike a bare regex search:
//! `ext = 10[0-9]` must not also pass 3100.

use regex::Regex;

use crate::core::model::value::{FieldSource, Value};

/// The call fields a section may filter on.
pub const FILTER_FIELDS: [&str; 3] = ["called", "caller", "ext"];

/// One `field = regex` line, compiled.
#[derive(Debug, Clone)]
pub struct Filter {
    pub field: &'static str,
    /// As written, for `webhook show section` and for comparing configurations.
    pub pattern: String,
    re: Regex,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.pattern == other.pattern
    }
}

impl Filter {
    /// Compiles `pattern` for `field` (one of [`FILTER_FIELDS`]), matching whole values.
    pub fn new(field: &str, pattern: &str) -> Result<Filter, String> {
        let field = FILTER_FIELDS
            .into_iter()
            .find(|f| *f == field)
            .ok_or_else(|| format!("cannot filter on `{field}` (called, caller, ext)"))?;
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("empty regular expression".into());
        }
        let re = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("bad regular expression: {e}"))?;
        Ok(Filter {
            field,
            pattern: pattern.to_string(),
            re,
        })
    }

    /// Whether the event's value of the field (empty when the call has none yet) matches.
    pub fn accepts(&self, src: &dyn FieldSource) -> bool {
        let value = match src.field(self.field) {
            Some(Value::Str(s)) => s,
            Some(Value::Int(n)) => n.to_string(),
            _ => String::new(),
        };
        self.re.is_match(&value)
    }
}

/// Sets (replacing one on the same field) a filter in `filters`.
pub fn set(filters: &mut Vec<Filter>, field: &str, pattern: &str) -> Result<(), String> {
    let f = Filter::new(field, pattern)?;
    filters.retain(|x| x.field != f.field);
    filters.push(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fields(HashMap<&'static str, &'static str>);
    impl FieldSource for Fields {
        fn field(&self, name: &str) -> Option<Value> {
            self.0.get(name).map(|v| Value::Str(v.to_string()))
        }
    }

    #[test]
    fn a_filter_matches_the_whole_value() {
        let f = Filter::new("ext", "10[0-9]").unwrap();
        assert!(f.accepts(&Fields(HashMap::from([("ext", "101")]))));
        assert!(!f.accepts(&Fields(HashMap::from([("ext", "3101")]))));
        assert!(!f.accepts(&Fields(HashMap::from([("ext", "1010")]))));
        assert!(!f.accepts(&Fields(HashMap::new())), "no ext yet");
        let alt = Filter::new("called", "74951234567|74951234568").unwrap();
        assert!(alt.accepts(&Fields(HashMap::from([("called", "74951234568")]))));
        assert!(
            !alt.accepts(&Fields(HashMap::from([("called", "749512345679")]))),
            "alternatives are anchored too"
        );
    }

    #[test]
    fn bad_filters_say_why() {
        assert!(Filter::new("ext", "10[")
            .unwrap_err()
            .contains("regular expression"));
        assert!(Filter::new("status", "ANSWER")
            .unwrap_err()
            .contains("called, caller, ext"));
        assert!(Filter::new("caller", " ").is_err());
        let mut v = Vec::new();
        set(&mut v, "caller", "7916.*").unwrap();
        set(&mut v, "caller", "7903.*").unwrap();
        assert_eq!(v.len(), 1, "a later line replaces an earlier one");
        assert_eq!(v[0].pattern, "7903.*");
    }
}
