//! Property-based fuzzing of every parser that reads what an administrator or a CRM writes:
//! `webhook.conf` (each key's value parser, by section type and preset), templates, and CRM
//! answers (strict and lenient JSON). Inputs are generated from grammars of the real keys and
//! value shapes, so they reach the value parsers instead of stopping at "unknown key", and
//! then mutated; besides "never panics", each property checks what the result must be.
//!
//! Runs in a few seconds inside `./tests/run.sh`. Failing cases proptest finds are saved in
//! `tests/fuzz_parsers.proptest-regressions` and replayed first on every run (keep that file
//! in git); hand-picked seeds live in `tests/fuzz-corpus/` and are checked the same way.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, FileFailurePersistence, RngAlgorithm};
use res_webhook::core::cli::section;
use res_webhook::core::config::raw::RawConfig;
use res_webhook::core::config::{values, Config, SectionKind};
use res_webhook::core::lookup::{parse_answer, sanitize};
use res_webhook::core::model::call::EventKind;
use res_webhook::core::model::synthetic;
use res_webhook::core::model::value::{FieldSource, Value};
use res_webhook::core::render::template::{FormatContext, Template};

fn cases(n: u32) -> PropConfig {
    PropConfig {
        cases: n,
        rng_algorithm: RngAlgorithm::ChaCha,
        // Relative to the package root, where cargo runs tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz_parsers.proptest-regressions",
        ))),
        ..PropConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Value shapes

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(String::from)
}

/// A field or variable name as templates write it.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&[
            "call_id",
            "event",
            "caller",
            "called",
            "ext",
            "duration",
            "status",
            "time_start",
            "time_end",
            "is_new",
            "agents",
            "targets",
            "recording_url",
            "number",
        ]),
        "[A-Z][A-Z0-9_]{0,8}",
        "[a-z][a-z0-9_.-]{0,8}",
    ]
}

/// Text without `${`, and with balanced parentheses (inside a function's argument a `)`
/// closes the call).
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 :/?&=._,|-]{0,10}",
        "[a-z0-9 ]{0,4}\\([a-z0-9 ]{0,4}\\)[a-z0-9 ]{0,4}",
    ]
}

/// A well-formed template and the field names it reads, in order.
fn template() -> impl Strategy<Value = (String, Vec<String>)> {
    let leaf = prop_oneof![
        literal().prop_map(|t| (t, vec![])),
        field_name().prop_map(|n| (format!("${{{n}}}"), vec![n])),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (pick(&["md5", "sha1", "sha256", "crc32"]), inner.clone())
                .prop_map(|(f, (t, names))| (format!("${{{f}({t})}}"), names)),
            proptest::collection::vec(inner, 1..4).prop_map(|parts| {
                let mut text = String::new();
                let mut names = Vec::new();
                for (t, n) in parts {
                    text.push_str(&t);
                    names.extend(n);
                }
                (text, names)
            }),
        ]
    })
}

/// A string with damage done to it: cut, or a character of template syntax put in.
fn damaged(s: String) -> impl Strategy<Value = String> {
    let len = s.len();
    (
        0..=len,
        proptest::sample::select(
            &["$", "${", "}", "(", ")", "${x", ")}", "|", "=>", "\\", ";"][..],
        ),
        any::<bool>(),
    )
        .prop_map(move |(at, ins, cut)| {
            let mut at = at.min(s.len());
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            if cut {
                s[..at].to_string()
            } else {
                format!("{}{}{}", &s[..at], ins, &s[at..])
            }
        })
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000, pick(&["", "ms", "s", "m", "min", "h", "d"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        (
            any::<u64>(),
            pick(&["", "ms", "s", "m", "h", "d", " s", "sec", "x"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        pick(&["", "s", "-5s", "1.5s", "5 parsecs", "99999999999999999999d"]),
    ]
}

fn list_of(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(items), 0..5).prop_map(|v| v.join(", "))
}

fn regex_text() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&[
            r"^\+?[0-9]{3,16}$",
            "[0-9]{3,16}",
            "10[0-9]",
            "a|b",
            "(",
            "[",
            "x{99999}"
        ]),
        r"[\^$+*?{}()|\[\]0-9a-z\\.]{0,12}",
    ]
}

fn param_line(valid: bool) -> BoxedStrategy<String> {
    // Names nest with dots and append with a trailing `[]` (`a[b]` is how query and form
    // write a nested name, not how a param is named).
    let name = prop_oneof![
        "[a-z][a-z0-9_]{0,6}",
        "[a-z]{1,4}\\.[a-z]{1,4}",
        "[a-z]{1,4}(\\.[a-z]{1,4})?\\[\\]",
    ];
    let ty = pick(&["", "|int", "|str", "|bool"]);
    let good = (name, template(), ty)
        .prop_map(|(n, (t, _), ty)| format!("{n} => {t}{ty}"))
        .boxed();
    if valid {
        good.boxed()
    } else {
        prop_oneof![
            3 => good.clone(),
            1 => good.prop_flat_map(damaged),
            1 => "[ -~]{0,30}",
        ]
        .boxed()
    }
}

/// A value for `key` of a section of type `kind`; `valid` keeps to values that must load.
fn value_for(key: &'static str, valid: bool) -> BoxedStrategy<String> {
    let v: BoxedStrategy<String> = match key {
        "url" => (
            pick(&["http://", "https://"]),
            "[a-z]{1,8}(\\.[a-z]{2,3})?(:[0-9]{2,5})?",
            template(),
        )
            .prop_map(|(s, h, (t, _))| format!("{s}{h}/{}", t.replace(' ', "")))
            .boxed(),
        "method" => pick(&["POST", "PUT"]).boxed(),
        "format" => pick(&["form", "json", "jsonrpc", "query"]).boxed(),
        "events" => list_of(&["start", "answer", "transfer", "end"])
            .prop_filter("not empty", |s| !s.is_empty())
            .boxed(),
        "direction" => list_of(&["in", "out", "internal"])
            .prop_filter("not empty", |s| !s.is_empty())
            .boxed(),
        "param" => param_line(true),
        "header" => ("[A-Za-z][A-Za-z0-9_-]{0,10}", template())
            .prop_map(|(n, (t, _))| format!("{n}: {t}"))
            .boxed(),
        "content_type" => pick(&["application/json", "text/plain; charset=utf-8"]).boxed(),
        "jsonrpc_method" => "[a-z.]{1,12}".boxed(),
        "date_format" => prop_oneof![
            pick(&["iso8601", "unix", "unix_ms"]),
            proptest::collection::vec(
                pick(&["%Y", "%m", "%d", "%H", "%M", "%S", "-", ":", "T", " ", "%z", "%s"]),
                1..6
            )
            .prop_map(|v| v.concat())
            .prop_filter("not blank", |s| !s.trim().is_empty()),
        ]
        .boxed(),
        "timezone" => pick(&["UTC", "Europe/Moscow", "Asia/Yekaterinburg"]).boxed(),
        "secret" => "[A-Za-z0-9]{1,20}"
            .prop_map(|s| format!("whsec_{s}"))
            .boxed(),
        "timeout" | "cache" | "ring_timeout" => (1u64..100_000, pick(&["", "ms", "s", "m"]))
            .prop_map(|(n, u)| format!("{n}{u}"))
            .boxed(),
        "retry" => proptest::collection::vec(
            (1u64..1000, pick(&["ms", "s", "m", "h"])).prop_map(|(n, u)| format!("{n}{u}")),
            1..6,
        )
        .prop_map(|v| v.join(", "))
        .boxed(),
        "concurrency" => (1u32..=64).prop_map(|n| n.to_string()).boxed(),
        "rate_limit" => (1u32..1000, pick(&["/s", "/min", "/m", "/h"]))
            .prop_map(|(n, u)| format!("{n}{u}"))
            .boxed(),
        // Click-to-call's is per minute.
        "rate_limit@originate" => (1u32..1000, pick(&["", "/min"]))
            .prop_map(|(n, u)| format!("{n}{u}"))
            .boxed(),
        "default_field" => "[a-z_]{1,12}".boxed(),
        "path" => "[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8})?".boxed(),
        "token" => "[A-Za-z0-9]{8,20}".boxed(),
        "context" => "[a-z-]{1,12}".boxed(),
        "allowed_to" | "allowed_from" => {
            pick(&[r"^\+?[0-9]{3,16}$", "[0-9]{3,16}", "10[0-9]|20[0-9]"]).boxed()
        }
        "caller_id" => "[0-9]{3,11}".boxed(),
        "enabled" => pick(&["yes", "no", "true", "off"]).boxed(),
        "called" | "caller" | "ext" => pick(&["7495[0-9]{7}", "10[0-9]", ".*"]).boxed(),
        "access_code" => "[0-9]{1,6}".boxed(),
        "internal_contexts" => list_of(&["from-internal", "from-office", "ext-local"]).boxed(),
        "recording_url" => template()
            .prop_map(|(t, _)| format!("https://pbx/rec/{}", t.replace(' ', "")))
            .boxed(),
        "repeat_window" => (0u32..1000).prop_map(|n| n.to_string()).boxed(),
        "trace_calls" => pick(&["yes", "no"]).boxed(),
        _ => "[a-z0-9]{0,8}".boxed(),
    };
    if valid {
        return v;
    }
    // Anything goes: the valid shape, a damaged one, a value parser's edge case, or noise.
    let edge: BoxedStrategy<String> = match key {
        "timeout" | "cache" | "ring_timeout" => duration_text().boxed(),
        "retry" => proptest::collection::vec(duration_text(), 0..4)
            .prop_map(|v| v.join(","))
            .boxed(),
        "allowed_to" | "allowed_from" | "called" | "caller" | "ext" => regex_text().boxed(),
        "param" => param_line(false),
        "concurrency" | "repeat_window" => prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            pick(&["", "0", "65", "18446744073709551616", "four"])
        ]
        .boxed(),
        "rate_limit" | "rate_limit@originate" => prop_oneof![
            (any::<u64>(), pick(&["/s", "/min", "/x", "", "/0s"]))
                .prop_map(|(n, u)| format!("{n}{u}")),
            pick(&["0/s", "/s", "1/", "2 per second"])
        ]
        .boxed(),
        "method" => pick(&["GET", "get", "DELETE", ""]).boxed(),
        "format" => pick(&["raw", "xml", "JSON", ""]).boxed(),
        "date_format" => "[%a-zA-Z:-]{0,8}".boxed(),
        "timezone" => pick(&["Mars/Olympus", "", "utc", "+03:00"]).boxed(),
        "path" => pick(&["", "..", "../etc", "a b", "/crm-api/", "ü"]).boxed(),
        "token" => "[ -~]{0,9}".boxed(),
        "url" => prop_oneof![
            pick(&["ftp://x/", "http://", "https:// x", "", "HTTP://X/"]),
            "[ -~]{0,20}"
        ]
        .boxed(),
        _ => "[ -~]{0,16}".boxed(),
    };
    prop_oneof![
        2 => v.clone(),
        1 => v.prop_flat_map(damaged),
        2 => edge,
        1 => "[ -~]{0,20}",
    ]
    .boxed()
}

const WEBHOOK_KEYS: &[&str] = &[
    "method",
    "format",
    "events",
    "direction",
    "param",
    "param",
    "param",
    "header",
    "content_type",
    "jsonrpc_method",
    "date_format",
    "timezone",
    "secret",
    "timeout",
    "retry",
    "concurrency",
    "rate_limit",
    "enabled",
    "called",
    "caller",
    "ext",
];
const LOOKUP_KEYS: &[&str] = &[
    "method",
    "format",
    "param",
    "param",
    "header",
    "timeout",
    "cache",
    "default_field",
    "date_format",
    "enabled",
];
const ORIGINATE_KEYS: &[&str] = &[
    "allowed_to",
    "allowed_from",
    "rate_limit@originate",
    "ring_timeout",
    "caller_id",
    "enabled",
];
const GENERAL_KEYS: &[&str] = &[
    "internal_contexts",
    "recording_url",
    "repeat_window",
    "timeout",
    "retry",
    "timezone",
    "date_format",
    "trace_calls",
];

fn lines(keys: &'static [&'static str], valid: bool) -> BoxedStrategy<Vec<String>> {
    proptest::collection::vec(proptest::sample::select(keys), 0..8)
        .prop_flat_map(move |ks| {
            ks.into_iter()
                .map(|k| {
                    // `key@type`: the key as written, with that section type's value shape.
                    let name = k.split('@').next().unwrap_or(k);
                    value_for(k, valid).prop_map(move |v| format!("{name} = {v}"))
                })
                .collect::<Vec<_>>()
        })
        .boxed()
}

/// One section's text. `valid`: only values that must load, without presets (whose own
/// rules are checked by their golden tests).
fn section(valid: bool) -> BoxedStrategy<String> {
    let kind = if valid {
        pick(&["webhook", "lookup", "originate"]).boxed()
    } else {
        prop_oneof![
            8 => pick(&["webhook", "lookup", "originate"]),
            1 => pick(&["", "bogus", "WEBHOOK"])
        ]
        .boxed()
    };
    let preset = if valid {
        Just(String::new()).boxed()
    } else {
        pick(&[
            "",
            "",
            "",
            "roistat",
            "mango",
            "xvb",
            "calltracking",
            "callkeeper",
            "acme",
        ])
        .boxed()
    };
    ("[a-z][a-z0-9-]{0,6}", kind, preset)
        .prop_flat_map(move |(name, kind, preset)| {
            let body = match kind.as_str() {
                "lookup" => lines(LOOKUP_KEYS, valid),
                "originate" => lines(ORIGINATE_KEYS, valid),
                _ => lines(WEBHOOK_KEYS, valid),
            };
            let required: BoxedStrategy<Vec<String>> = match kind.as_str() {
                "originate" => (
                    value_for("path", valid),
                    value_for("token", valid),
                    value_for("context", valid),
                )
                    .prop_map(|(p, t, c)| {
                        vec![
                            format!("path = {p}"),
                            format!("token = {t}"),
                            format!("context = {c}"),
                        ]
                    })
                    .boxed(),
                _ => value_for("url", valid)
                    .prop_map(|u| vec![format!("url = {u}")])
                    .boxed(),
            };
            (Just((name, kind, preset)), required, body)
        })
        .prop_map(|((name, kind, preset), required, body)| {
            let mut out = format!("[{name}]\n");
            if !kind.is_empty() {
                out += &format!("type = {kind}\n");
            }
            if !preset.is_empty() {
                out += &format!("preset = {preset}\n");
            }
            for l in required.into_iter().chain(body) {
                out += &l;
                out.push('\n');
            }
            out
        })
        .boxed()
}

fn config_text(valid: bool) -> impl Strategy<Value = String> {
    (
        lines(GENERAL_KEYS, valid),
        proptest::collection::vec(section(valid), 1..4),
    )
        .prop_map(|(general, sections)| {
            let mut out = String::from("[general]\n");
            for l in general {
                out += &l;
                out.push('\n');
            }
            out + &sections.concat()
        })
}

// ---------------------------------------------------------------------------------------
// What every configuration must satisfy

/// Loads `text`, checks the errors point into the file, and uses every section that loaded
/// the way the module does (render every event, describe, reload).
fn check_config(text: &str) -> (Config, Vec<String>) {
    let raw = RawConfig::parse_text("webhook.conf", text);
    let (config, errors) = Config::from_raw(&raw);
    let line_count = text.lines().count() as u32;
    for e in &errors {
        assert!(e.file == "webhook.conf", "{e}");
        assert!(e.line <= line_count, "error past the end of the file: {e}");
        assert!(!e.reason.is_empty(), "an error without a reason: {e:?}");
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for s in &config.sections {
        let _ = section::text(s);
        match &s.kind {
            SectionKind::Webhook(w) => {
                for kind in [
                    EventKind::Start,
                    EventKind::Answer,
                    EventKind::Transfer,
                    EventKind::End,
                ] {
                    if let Ok(req) = w.render(&synthetic::call_event(kind, now)) {
                        assert!(req.url.starts_with("http://") || req.url.starts_with("https://"));
                        for (n, v) in &req.headers {
                            assert!(!n.contains(['\r', '\n']) && !v.contains(['\r', '\n']));
                        }
                    }
                }
            }
            SectionKind::Lookup(l) => {
                let _ = l.render("+7 (916) 123-45-67 ${x}");
            }
            SectionKind::Originate(o) => {
                let _ = o.allowed_to.is_match("79161234567");
            }
        }
    }
    let (_, _) = Config::reload(&config, &raw);
    let shown = errors.iter().map(|e| e.to_string()).collect();
    (config, shown)
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any configuration text built from the real keys, valid or not: no panic, every error
    /// points into the file, every section that loads can be used.
    #[test]
    fn any_configuration_loads_or_says_why(text in config_text(false)) {
        check_config(&text);
    }

    /// Built only from values that are valid: every section loads, with no error at all —
    /// which proves the generator reaches each key's value parser and its success path.
    #[test]
    fn valid_values_always_load(text in config_text(true)) {
        let (config, errors) = check_config(&text);
        let names: std::collections::HashSet<&str> = config.sections.iter().map(|s| s.name.as_str()).collect();
        prop_assert!(
            errors.iter().all(|e| e.contains("defined twice") || e.contains("already served")),
            "{}\n---\n{text}", errors.join("\n")
        );
        prop_assert!(!names.is_empty());
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// A duration is what it says, or an error: never a wrapped or truncated value.
    #[test]
    fn durations_are_exact_or_refused(
        n in prop_oneof![0u64..10_000_000, any::<u64>()],
        unit in proptest::sample::select(&["", "ms", "s", "m", "min", "h", "d"][..]),
        bare_ms in proptest::sample::select(&[1u64, 1000][..]),
    ) {
        let unit_ms: u128 = match unit {
            "" => bare_ms as u128,
            "ms" => 1,
            "s" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            _ => 86_400_000,
        };
        let text = format!("{n}{unit}");
        let want = n as u128 * unit_ms;
        match values::duration(&text, Duration::from_millis(bare_ms)) {
            Ok(d) => prop_assert_eq!(d.as_millis(), want, "{}", text),
            Err(e) => prop_assert!(want > 10_000_000_000_000u128, "{} refused: {}", text, e),
        }
    }

    /// Well-formed templates parse, name their fields in order, and render; damaged ones
    /// parse or are refused, never panic.
    #[test]
    fn templates_parse_and_render((text, names) in template(), cut in any::<prop::sample::Index>()) {
        let t = Template::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let fields: Vec<String> = t.fields().into_iter().map(String::from).collect();
        prop_assert_eq!(&fields, &names);
        let ctx = FormatContext::default();
        let rendered = t.render_text(&Everything, &ctx);
        if names.is_empty() && !text.contains("${") {
            prop_assert_eq!(rendered, text.clone());
        }
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let _ = Template::parse(&text[..at]);
    }

    #[test]
    fn any_text_as_a_template_or_param_never_panics(s in "[$ {}()a-z0-9:|_.=>\\[\\]-]{0,60}") {
        if let Ok(t) = Template::parse(&s) {
            let _ = t.render_text(&Everything, &FormatContext::default());
        }
        let _ = res_webhook::core::render::payload::Param::parse(&s);
        let _ = res_webhook::core::render::payload::Param::parse(&format!("x => {s}"));
    }
}

/// A source that knows every field (`v:<name>`).
struct Everything;
impl FieldSource for Everything {
    fn field(&self, name: &str) -> Option<Value> {
        Some(Value::Str(format!("v:{name}")))
    }
}

// ---------------------------------------------------------------------------------------
// CRM answers: strict and lenient JSON

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Obj(BTreeMap<String, J>),
}

fn json_value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i32>().prop_map(|n| J::Int(n as i64)),
        any::<String>().prop_map(J::Str),
        "[a-zA-Zа-яА-Я0-9 '\"/\\\\&|,()${}-]{0,12}".prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        proptest::collection::btree_map("[a-z_][a-z0-9_]{0,6}", inner, 0..5).prop_map(J::Obj)
    })
}

fn json_object() -> impl Strategy<Value = BTreeMap<String, J>> {
    proptest::collection::btree_map("[a-z_][a-z0-9_]{0,6}", json_value(), 0..6)
}

fn strict(j: &J) -> String {
    match j {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Int(n) => n.to_string(),
        J::Str(s) => serde_json::to_string(s).unwrap(),
        J::Obj(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), strict(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// The lenient form of the XVB document: unquoted keys, single-quoted strings, spaces.
fn lenient(j: &J) -> String {
    match j {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Int(n) => n.to_string(),
        J::Str(s) => {
            let mut out = String::from("'");
            for c in s.chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                        let mut buf = [0u16; 2];
                        for u in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
        J::Obj(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("{k}: {}", lenient(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What the lookup must make of an object: every non-null leaf, nested keys joined by `.`.
fn flat(prefix: &str, j: &J, out: &mut HashMap<String, String>) {
    match j {
        J::Null => {}
        J::Bool(b) => {
            out.insert(prefix.into(), b.to_string());
        }
        J::Int(n) => {
            out.insert(prefix.into(), n.to_string());
        }
        J::Str(s) => {
            out.insert(prefix.into(), s.clone());
        }
        J::Obj(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flat(&key, v, out);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn crm_answers_strict_and_lenient_read_the_same(obj in json_object()) {
        let j = J::Obj(obj);
        let mut want = HashMap::new();
        flat("", &j, &mut want);
        let want = (!want.is_empty()).then_some(want);
        let s = strict(&j);
        prop_assert_eq!(parse_answer(s.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?, want.clone(), "{}", s);
        let l = lenient(&j);
        prop_assert_eq!(parse_answer(l.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?, want, "{}", l);
    }

    /// Anything a CRM may send: never a panic, and whatever is found is safe for the dialplan.
    #[test]
    fn any_crm_answer_is_read_or_refused(
        body in prop_oneof![
            any::<Vec<u8>>(),
            json_object().prop_map(|o| lenient(&J::Obj(o)).into_bytes()),
            json_object().prop_flat_map(|o| damaged(strict(&J::Obj(o)))).prop_map(String::into_bytes),
        ]
    ) {
        if let Ok(Some(fields)) = parse_answer(&body) {
            for v in fields.values() {
                let s = sanitize(v);
                prop_assert!(!s.contains([',', '&', '|', '$', '(', ')', '/', '@', ';', '`', '\'', '"', '\n']), "{}", s);
                prop_assert!(!s.contains("${") && !s.contains("$["), "{}", s);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The kept corpus

#[test]
fn the_corpus_loads_as_recorded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("conf") => {
                let (_, errors) = check_config(&text);
                // The first line of each seed says how many errors it must give.
                if let Some(want) = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("; errors: "))
                {
                    assert_eq!(
                        errors.len(),
                        want.trim().parse::<usize>().unwrap(),
                        "{}:\n{}",
                        path.display(),
                        errors.join("\n")
                    );
                }
            }
            Some("json") => {
                let _ = parse_answer(text.as_bytes());
            }
            Some("template") => {
                let _ = Template::parse(text.trim_end_matches('\n'));
            }
            _ => continue,
        }
        n += 1;
    }
    assert!(n >= 5, "the corpus is in tests/fuzz-corpus ({n} files)");
}
