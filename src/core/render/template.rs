//! Templates: literal text with `${field}` and nested hash functions
//! (`${sha256(${call_id}:s3cret)}`), compiled once at config load so a bad template is a config
//! error, never a runtime surprise.

use std::fmt;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::DateTime;
use chrono::Utc;
use chrono_tz::Tz;
use md5::Digest as _;

use crate::core::model::value::{FieldSource, Value};

/// Hash functions a template may call; each renders lowercase hex (crc32: 8 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    Md5,
    Sha1,
    Sha256,
    Crc32,
}

impl HashFn {
    fn parse(name: &str) -> Option<HashFn> {
        Some(match name {
            "md5" => HashFn::Md5,
            "sha1" => HashFn::Sha1,
            "sha256" => HashFn::Sha256,
            "crc32" => HashFn::Crc32,
            _ => return None,
        })
    }

    fn apply(self, input: &str) -> String {
        let bytes = input.as_bytes();
        match self {
            HashFn::Md5 => hex::encode(md5::Md5::digest(bytes)),
            HashFn::Sha1 => hex::encode(sha1::Sha1::digest(bytes)),
            HashFn::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            HashFn::Crc32 => format!("{:08x}", crc32fast::hash(bytes)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(String),
    Call(HashFn, Template),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

/// The template as `webhook.conf` writes it (`${field}`, `${sha256(…)}`).
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Field(name) => write!(f, "${{{name}}}")?,
                Part::Call(func, inner) => {
                    let name = match func {
                        HashFn::Md5 => "md5",
                        HashFn::Sha1 => "sha1",
                        HashFn::Sha256 => "sha256",
                        HashFn::Crc32 => "crc32",
                    };
                    write!(f, "${{{name}({inner})}}")?
                }
            }
        }
        Ok(())
    }
}

/// Why a template does not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How times are written: strftime, ISO 8601, or unix seconds (a JSON number).
#[derive(Debug, Clone, PartialEq)]
pub enum DateFormat {
    Strftime(Strftime),
    Iso8601,
    Unix,
    /// Unix time in milliseconds (a JSON number).
    UnixMs,
}

/// A strftime pattern, parsed once when the config loads rather than for every time written.
#[derive(Debug, Clone)]
pub struct Strftime {
    pattern: String,
    items: Arc<[Item<'static>]>,
}

impl Strftime {
    /// Rejects patterns chrono cannot format.
    pub fn new(pattern: &str) -> Result<Strftime, TemplateError> {
        // parse_to_owned refuses a pattern with any item chrono cannot format.
        let items = StrftimeItems::new(pattern)
            .parse_to_owned()
            .map_err(|_| TemplateError(format!("not a valid strftime pattern: {pattern}")))?;
        Ok(Strftime {
            pattern: pattern.to_string(),
            items: items.into(),
        })
    }
}

impl PartialEq for Strftime {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl DateFormat {
    /// Parses `iso8601`, `unix` or a strftime pattern, rejecting patterns chrono cannot format.
    pub fn parse(s: &str) -> Result<DateFormat, TemplateError> {
        match s.trim() {
            "iso8601" => Ok(DateFormat::Iso8601),
            "unix" => Ok(DateFormat::Unix),
            "unix_ms" => Ok(DateFormat::UnixMs),
            "" => Err(TemplateError("empty date format".into())),
            pattern => Ok(DateFormat::Strftime(Strftime::new(pattern)?)),
        }
    }

    /// A pattern written in the code (presets, the default), known to be valid.
    pub fn strftime(pattern: &'static str) -> DateFormat {
        DateFormat::Strftime(Strftime::new(pattern).expect("a valid built-in strftime pattern"))
    }
}

/// What rendering needs besides the fields: how to write times.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatContext {
    pub date_format: DateFormat,
    pub timezone: Tz,
}

impl Default for FormatContext {
    fn default() -> Self {
        FormatContext {
            date_format: DateFormat::strftime("%Y-%m-%d %H:%M:%S"),
            timezone: Tz::UTC,
        }
    }
}

impl FormatContext {
    /// A time as this context writes it: a string, or a number for `unix`.
    pub fn time(&self, t: DateTime<Utc>) -> Value {
        let local = t.with_timezone(&self.timezone);
        match &self.date_format {
            DateFormat::Unix => Value::Int(t.timestamp()),
            DateFormat::UnixMs => Value::Int(t.timestamp_millis()),
            DateFormat::Iso8601 => {
                Value::Str(local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
            }
            DateFormat::Strftime(p) => {
                Value::Str(local.format_with_items(p.items.iter()).to_string())
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    /// Parses until end of input, or (inside a function call) until the `)` closing it.
    fn template(&mut self, inside_call: bool, depth: usize) -> Result<Template, TemplateError> {
        if depth > 16 {
            return Err(TemplateError("functions nested more than 16 deep".into()));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut parens = 0usize;
        while let Some(c) = self.rest().chars().next() {
            if self.rest().starts_with("${") {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                self.pos += 2;
                parts.push(self.expression(depth)?);
                continue;
            }
            if inside_call {
                if c == '(' {
                    parens += 1;
                } else if c == ')' {
                    if parens == 0 {
                        break;
                    }
                    parens -= 1;
                }
            }
            text.push(c);
            self.pos += c.len_utf8();
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    fn expression(&mut self, depth: usize) -> Result<Part, TemplateError> {
        let start = self.pos;
        let name_len = self
            .rest()
            .find(|c: char| !is_name_char(c))
            .unwrap_or(self.rest().len());
        let name = &self.s[start..start + name_len];
        self.pos += name_len;
        if name.is_empty() {
            return Err(TemplateError(format!(
                "empty or invalid name after ${{ at byte {}",
                start - 2
            )));
        }
        match self.rest().chars().next() {
            Some('}') => {
                self.pos += 1;
                Ok(Part::Field(name.to_string()))
            }
            Some('(') => {
                let f = HashFn::parse(name).ok_or_else(|| {
                    TemplateError(format!(
                        "unknown function {name}() (known: md5, sha1, sha256, crc32)"
                    ))
                })?;
                self.pos += 1;
                let inner = self.template(true, depth + 1)?;
                if !self.rest().starts_with(")}") {
                    return Err(TemplateError(format!("unclosed {name}( … ) in ${{…}}")));
                }
                self.pos += 2;
                Ok(Part::Call(f, inner))
            }
            _ => Err(TemplateError(format!("unclosed ${{{name}"))),
        }
    }
}

impl Template {
    /// Compiles a template; unclosed `${`, empty names and unknown functions are errors.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut p = Parser { s, pos: 0 };
        let t = p.template(false, 0)?;
        debug_assert_eq!(p.pos, s.len());
        Ok(t)
    }

    /// A template that is just this text.
    pub fn literal(s: &str) -> Template {
        Template {
            parts: if s.is_empty() {
                vec![]
            } else {
                vec![Part::Text(s.into())]
            },
        }
    }

    /// Every field name the template reads, functions' arguments included.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Field(n) => out.push(n.as_str()),
                Part::Call(_, t) => out.extend(t.fields()),
                Part::Text(_) => {}
            }
        }
        out
    }

    /// The field's name when the template is one bare `${field}`.
    pub fn bare_field(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Field(name)] => Some(name),
            _ => None,
        }
    }

    /// The typed value: a template that is one bare `${field}` keeps the field's type (a time
    /// is formatted by `ctx`); anything else is text. A missing field is `Null`.
    pub fn render_value(&self, src: &dyn FieldSource, ctx: &FormatContext) -> Value {
        if let [Part::Field(name)] = self.parts.as_slice() {
            return match src.field(name).unwrap_or(Value::Null) {
                Value::Time(t) => ctx.time(t),
                v => v,
            };
        }
        Value::Str(self.render_with(src, ctx, &|s| s.to_string()))
    }

    /// The text, with missing fields empty.
    pub fn render_text(&self, src: &dyn FieldSource, ctx: &FormatContext) -> String {
        self.render_with(src, ctx, &|s| s.to_string())
    }

    /// The text, with every field's value passed through `escape` (e.g. URL encoding) while
    /// the template's own literal text is kept as written.
    pub fn render_with(
        &self,
        src: &dyn FieldSource,
        ctx: &FormatContext,
        escape: &dyn Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(name) => match src.text(name) {
                    Some(s) => out.push_str(&escape(s)),
                    None => {
                        let v = src.field(name).unwrap_or(Value::Null);
                        out.push_str(&escape(&value_text(&v, ctx)));
                    }
                },
                Part::Call(f, inner) => {
                    // Hashes are computed over the raw text; the hex digest needs no escaping.
                    out.push_str(&f.apply(&inner.render_text(src, ctx)));
                }
            }
        }
        out
    }
}

/// A value as text: `Null` is empty, booleans `true`/`false`, times per `ctx`; a list is its
/// items joined by `,` and a record its values joined by `:` (`targets` in a query string:
/// `100:12:false,101:3:true`).
pub fn value_text(v: &Value, ctx: &FormatContext) -> String {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| value_text(i, ctx))
            .collect::<Vec<_>>()
            .join(","),
        Value::Record(fields) => fields
            .iter()
            .map(|(_, v)| value_text(v, ctx))
            .collect::<Vec<_>>()
            .join(":"),
        Value::Null => String::new(),
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => match ctx.time(*t) {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::value::Fields;
    use std::collections::HashMap;

    fn src() -> Fields {
        let t = DateTime::parse_from_rfc3339("2024-03-01T09:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        Fields(HashMap::from([
            ("call_id", Value::Str("1700000000.12".into())),
            ("duration", Value::Int(42)),
            ("is_new", Value::Bool(true)),
            ("caller_name", Value::Str("Вася Пупкин".into())),
            ("time_start", Value::Time(t)),
            ("missing", Value::Null),
        ]))
    }

    fn ctx() -> FormatContext {
        FormatContext::default()
    }

    #[test]
    fn bare_field_keeps_its_type_and_mixed_text_is_a_string() {
        let s = src();
        assert_eq!(
            Template::parse("${duration}")
                .unwrap()
                .render_value(&s, &ctx()),
            Value::Int(42)
        );
        assert_eq!(
            Template::parse("${is_new}")
                .unwrap()
                .render_value(&s, &ctx()),
            Value::Bool(true)
        );
        assert_eq!(
            Template::parse("d=${duration}s")
                .unwrap()
                .render_value(&s, &ctx()),
            Value::Str("d=42s".into())
        );
        assert_eq!(
            Template::parse("${missing}")
                .unwrap()
                .render_value(&s, &ctx()),
            Value::Null
        );
        assert_eq!(
            Template::parse("${NOPE}").unwrap().render_value(&s, &ctx()),
            Value::Null
        );
        assert_eq!(
            Template::parse("x${NOPE}y")
                .unwrap()
                .render_text(&s, &ctx()),
            "xy"
        );
    }

    #[test]
    fn nested_hashes_match_known_digests() {
        let s = src();
        let r = |t: &str| Template::parse(t).unwrap().render_text(&s, &ctx());
        // Independent digests of the literal strings (coreutils md5sum / sha1sum / sha256sum).
        assert_eq!(r("${md5(abc)}"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            r("${sha1(abc)}"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            r("${sha256(abc)}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            r("${crc32(The quick brown fox jumps over the lazy dog)}"),
            "414fa339"
        );
        assert_eq!(
            r("${sha256(${call_id}:s3cret)}"),
            r("${sha256(1700000000.12:s3cret)}")
        );
        assert_eq!(
            r("${md5(${md5(abc)})}"),
            r("${md5(900150983cd24fb0d6963f7d28e17f72)}")
        );
        assert_eq!(r("${md5(f(x))}"), r("${md5(f(x))}"));
    }

    #[test]
    fn times_follow_the_date_format_and_time_zone() {
        let s = src();
        let t = Template::parse("${time_start}").unwrap();
        let moscow = FormatContext {
            date_format: DateFormat::parse("%d.%m.%Y %H:%M").unwrap(),
            timezone: chrono_tz::Europe::Moscow,
        };
        assert_eq!(
            t.render_value(&s, &moscow),
            Value::Str("01.03.2024 12:30".into())
        );
        let iso = FormatContext {
            date_format: DateFormat::Iso8601,
            timezone: chrono_tz::Europe::Moscow,
        };
        assert_eq!(
            t.render_value(&s, &iso),
            Value::Str("2024-03-01T12:30:05+03:00".into())
        );
        let unix = FormatContext {
            date_format: DateFormat::Unix,
            timezone: Tz::UTC,
        };
        assert_eq!(t.render_value(&s, &unix), Value::Int(1709285405));
        assert_eq!(
            t.render_value(&s, &ctx()),
            Value::Str("2024-03-01 09:30:05".into())
        );
        assert!(DateFormat::parse("%Q%").is_err());
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in [
            "${call_id",
            "${",
            "${}",
            "a ${sha256(x}",
            "${sha512(x)}",
            "${md5(x)",
            "${a b}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} should not compile");
        }
        assert!(Template::parse("plain $ text {}").is_ok());
    }

    #[test]
    fn escape_applies_to_values_only() {
        let s = src();
        let t = Template::parse("https://x/?n=${caller_name}&a=1").unwrap();
        let out = t.render_with(&s, &ctx(), &|v| v.replace(' ', "+"));
        assert_eq!(out, "https://x/?n=Вася+Пупкин&a=1");
        assert_eq!(t.fields(), ["caller_name"]);
    }
}
