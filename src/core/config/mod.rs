//! The configuration model (`webhook.conf`): sections parsed from what the host's config loader
//! read. A bad section is reported (file, line, section, key, why) and skipped; the rest load.

pub mod filter;
pub mod general;
pub mod lookup;
pub mod originate;
pub mod preset;
pub mod raw;
pub mod request_spec;
pub mod values;
pub mod webhook;

use std::collections::HashSet;
use std::fmt;

use crate::core::delivery::nats::NatsTarget;

pub use general::General;
pub use lookup::Lookup;
pub use originate::Originate;
pub use webhook::Webhook;

use raw::{RawConfig, RawSection};
use request_spec::RequestSpec;

/// One configuration problem, precise enough to fix without guessing.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub section: String,
    pub key: Option<String>,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} [{}]", self.file, self.line, self.section)?;
        if let Some(k) = &self.key {
            write!(f, " {k}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why one `key = value` line was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyError {
    /// This section type has no such key.
    Unknown,
    /// The key exists but its value is wrong; why, for the administrator.
    Invalid(String),
}

impl From<String> for KeyError {
    fn from(why: String) -> KeyError {
        KeyError::Invalid(why)
    }
}

impl From<&str> for KeyError {
    fn from(why: &str) -> KeyError {
        KeyError::Invalid(why.to_string())
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unknown => f.write_str("unknown key"),
            KeyError::Invalid(why) => f.write_str(why),
        }
    }
}

/// What a section is.
#[derive(Debug, Clone, PartialEq)]
pub enum SectionKind {
    /// Boxed: the largest kind by far (the request, filters, NATS target).
    Webhook(Box<Webhook>),
    Lookup(Lookup),
    Originate(Originate),
}

/// One named section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    pub kind: SectionKind,
    /// `enabled = no` keeps a section configured (and checked) but switched off: a webhook
    /// section renders nothing new (what it already queued still goes out), a lookup answers
    /// NOTFOUND without asking, a click-to-call endpoint is not served.
    pub enabled: bool,
}

/// The whole configuration in force.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub general: General,
    pub sections: Vec<Section>,
}

/// Names templates may use that are not call data.
pub(crate) const BUILTIN_FIELDS: &[&str] = &[
    "call_id",
    "node",
    "event",
    "direction",
    "caller",
    "caller_name",
    "called",
    "ext",
    "time_start",
    "time_answer",
    "time_end",
    "wait_duration",
    "duration",
    "total_duration",
    "status",
    "hangup_cause",
    "recording",
    "recording_url",
    "is_new",
    "is_duplicate",
    "context",
    "exten",
    "channel",
    "uniqueid",
    "accountcode",
    "answered_by",
    "agents",
    "targets",
    "transfers",
    "transferred_from",
    "queue",
    "queue_wait",
    "hangup_by",
    "merged_into",
    "forwarded_to",
    "number",
];

impl Config {
    /// Parses a whole file. Bad sections are skipped and reported; the rest load.
    pub fn from_raw(raw: &RawConfig) -> (Config, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut general = General::default();
        for s in raw.sections.iter().filter(|s| s.name == "general") {
            for e in &s.entries {
                if let Err(why) = general.apply(&e.key, &e.value) {
                    errors.push(ConfigError {
                        file: e.file.clone(),
                        section: "general".into(),
                        key: Some(e.key.clone()),
                        line: e.line,
                        reason: match why {
                            KeyError::Unknown => format!("unknown key `{}` (ignored)", e.key),
                            KeyError::Invalid(reason) => reason,
                        },
                    });
                }
            }
        }
        let mut sections: Vec<Section> = Vec::new();
        let mut paths = HashSet::new();
        for s in raw.sections.iter().filter(|s| s.name != "general") {
            if sections.iter().any(|x| x.name == s.name) {
                errors.push(section_error(
                    raw,
                    s,
                    None,
                    "defined twice; the second is skipped".into(),
                ));
                continue;
            }
            match parse_section(s, &general, raw) {
                Ok(section) => {
                    if let SectionKind::Originate(o) = &section.kind {
                        if !paths.insert(o.path.clone()) {
                            errors.push(section_error(
                                raw,
                                s,
                                Some("path"),
                                format!("/webhook/{} is already served by another section", o.path),
                            ));
                            continue;
                        }
                    }
                    sections.push(section)
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        (Config { general, sections }, errors)
    }

    /// Re-reads the file for `module reload`: like [`Config::from_raw`], but a section that
    /// is now invalid keeps its previous version (and that is reported).
    pub fn reload(previous: &Config, raw: &RawConfig) -> (Config, Vec<ConfigError>) {
        let (mut config, mut errors) = Config::from_raw(raw);
        let failed: HashSet<String> = errors.iter().map(|e| e.section.clone()).collect();
        for old in &previous.sections {
            if failed.contains(&old.name) && !config.sections.iter().any(|s| s.name == old.name) {
                config.sections.push(old.clone());
                errors.push(ConfigError {
                    file: raw.file.clone(),
                    section: old.name.clone(),
                    key: None,
                    line: 0,
                    reason: "keeping the previous version of this section until it is fixed".into(),
                });
            }
        }
        (config, errors)
    }

    /// Names used in templates that are not built-in fields: the channel variables and call
    /// data the host must copy for the templates to see them.
    pub fn referenced_variables(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut add = |spec: &RequestSpec| {
            for f in spec.fields() {
                if !BUILTIN_FIELDS.contains(&f.as_str()) {
                    out.insert(f);
                }
            }
        };
        for s in &self.sections {
            match &s.kind {
                SectionKind::Webhook(w) => add(&w.request),
                SectionKind::Lookup(l) => add(&l.request),
                SectionKind::Originate(_) => {}
            }
        }
        if let Some(t) = &self.general.recording_url {
            out.extend(
                t.fields()
                    .into_iter()
                    .filter(|f| !BUILTIN_FIELDS.contains(f))
                    .map(String::from),
            );
        }
        out
    }

    /// Whether any template reads `is_new` or `is_duplicate` (else the caller history, a disk
    /// write per call, is not kept).
    pub fn uses_caller_history(&self) -> bool {
        self.sections.iter().any(|s| match &s.kind {
            SectionKind::Webhook(w) => w
                .request
                .fields()
                .iter()
                .any(|f| f == "is_new" || f == "is_duplicate"),
            _ => false,
        })
    }

    /// The webhook section called `name`.
    pub fn webhook(&self, name: &str) -> Option<&Webhook> {
        self.sections.iter().find_map(|s| match &s.kind {
            SectionKind::Webhook(w) if s.name == name => Some(w.as_ref()),
            _ => None,
        })
    }

    /// Whether a section called `name` exists and is switched off (`enabled = no`).
    pub fn disabled(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name && !s.enabled)
    }

    /// The lookup section called `name`, when enabled.
    pub fn lookup(&self, name: &str) -> Option<&Lookup> {
        self.sections.iter().find_map(|s| match &s.kind {
            SectionKind::Lookup(l) if s.name == name && s.enabled => Some(l),
            _ => None,
        })
    }

    /// The enabled originate section serving `/webhook/<path>`.
    pub fn originate_at(&self, path: &str) -> Option<(&str, &Originate)> {
        let path = path.trim_matches('/');
        self.sections.iter().find_map(|s| match &s.kind {
            SectionKind::Originate(o) if o.path == path && s.enabled => Some((s.name.as_str(), o)),
            _ => None,
        })
    }
}

fn section_error(
    raw: &RawConfig,
    s: &RawSection,
    key: Option<&str>,
    reason: String,
) -> ConfigError {
    let line = key
        .and_then(|k| s.entries.iter().find(|e| e.key == k))
        .or(s.entries.first())
        .map(|e| e.line)
        .unwrap_or(0);
    let file = s
        .entries
        .first()
        .map(|e| e.file.clone())
        .unwrap_or_else(|| raw.file.clone());
    ConfigError {
        file,
        section: s.name.clone(),
        key: key.map(String::from),
        line,
        reason,
    }
}

/// Parses one non-general section; every problem in it is reported, and any problem skips it.
fn parse_section(
    s: &RawSection,
    general: &General,
    raw: &RawConfig,
) -> Result<Section, Vec<ConfigError>> {
    let value_of = |k: &str| {
        s.entries
            .iter()
            .rev()
            .find(|e| e.key == k)
            .map(|e| e.value.trim().to_string())
    };
    let Some(kind) = value_of("type") else {
        return Err(vec![section_error(
            raw,
            s,
            None,
            "missing `type` (webhook, lookup or originate)".into(),
        )]);
    };
    let mut errors = Vec::new();
    let preset = match value_of("preset") {
        Some(p) => match preset::Preset::parse(&p) {
            Some(p) => Some(p),
            None => {
                return Err(vec![section_error(
                    raw,
                    s,
                    Some("preset"),
                    format!("unknown preset `{p}` (roistat, mango, xvb, calltracking, callkeeper)"),
                )])
            }
        },
        None => None,
    };

    let mut spec = RequestSpec::new(general.format_context());
    let mut target = match kind.as_str() {
        "webhook" => SectionKind::Webhook(Box::new(Webhook::new(
            spec.clone(),
            general.timeout,
            general.retry.clone(),
        ))),
        "lookup" => SectionKind::Lookup(Lookup::new(
            spec.clone(),
            general.timeout.min(std::time::Duration::from_millis(1500)),
        )),
        "originate" => SectionKind::Originate(Originate::default()),
        "nats" => {
            spec.subject = true;
            let mut w = Webhook::new(spec.clone(), general.timeout, general.retry.clone());
            w.nats = Some(NatsTarget::default());
            SectionKind::Webhook(Box::new(w))
        }
        other => {
            return Err(vec![section_error(
                raw,
                s,
                Some("type"),
                format!("unknown type `{other}` (webhook, nats, lookup or originate)"),
            )])
        }
    };
    if let Some(p) = preset {
        p.apply(&mut spec, &mut target);
    }

    let mut enabled = true;
    for e in &s.entries {
        if e.key == "type" || e.key == "preset" {
            continue;
        }
        if e.key == "enabled" {
            match values::boolean(&e.value) {
                Ok(b) => enabled = b,
                Err(reason) => errors.push(ConfigError {
                    file: e.file.clone(),
                    section: s.name.clone(),
                    key: Some(e.key.clone()),
                    line: e.line,
                    reason,
                }),
            }
            continue;
        }
        // A preset's own keys, then (nats connection keys,) request keys, then the type's.
        let invalid = |r: Result<(), String>| r.map_err(KeyError::Invalid);
        let result = match preset.and_then(|p| p.apply_key(&e.key, &e.value, &mut spec)) {
            Some(r) => invalid(r),
            None => match &mut target {
                SectionKind::Webhook(w) => match w
                    .nats
                    .as_mut()
                    .and_then(|n| n.apply(&e.key, &e.value))
                    .or_else(|| spec.apply(&e.key, &e.value))
                {
                    Some(r) => invalid(r),
                    None => w.apply(&e.key, &e.value),
                },
                SectionKind::Lookup(l) => match spec.apply(&e.key, &e.value) {
                    Some(r) => invalid(r),
                    None => l.apply(&e.key, &e.value),
                },
                SectionKind::Originate(o) => o.apply(&e.key, &e.value),
            },
        };
        if let Err(why) = result {
            let reason = match why {
                KeyError::Unknown => format!("unknown key `{}` for type = {kind}", e.key),
                KeyError::Invalid(reason) => reason,
            };
            errors.push(ConfigError {
                file: e.file.clone(),
                section: s.name.clone(),
                key: Some(e.key.clone()),
                line: e.line,
                reason,
            });
        }
    }
    if let Some(p) = preset {
        p.finish(&mut spec);
    }
    let validation = match &mut target {
        SectionKind::Webhook(w) => {
            let v = spec
                .validate()
                .and_then(|()| w.nats.as_ref().map_or(Ok(()), NatsTarget::validate));
            w.request = spec;
            v
        }
        SectionKind::Lookup(l) => {
            let v = spec.validate();
            l.request = spec;
            v
        }
        SectionKind::Originate(o) => o.validate(),
    };
    if let (Err((key, reason)), true) = (validation, errors.is_empty()) {
        errors.push(section_error(raw, s, Some(key), reason));
    }
    if errors.is_empty() {
        Ok(Section {
            name: s.name.clone(),
            kind: target,
            enabled,
        })
    } else {
        for e in errors.iter_mut() {
            e.reason.push_str("; section skipped");
        }
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::call::{Direction, EventKind};

    fn parse(text: &str) -> (Config, Vec<ConfigError>) {
        Config::from_raw(&RawConfig::parse_text("webhook.conf", text))
    }

    const GOOD: &str = "
[general]
internal_contexts = from-internal, from-office
repeat_window = 30
timeout = 2500
retry = 1s, 10s

[crm]
type = webhook
url = https://crm.example.com/calls?src=pbx
method = POST
format = json
events = start, end
direction = in
param = id => ${call_id}
param = duration => ${duration}
header = Authorization: Bearer abc
secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

[crm-contact]
type = lookup
url = https://crm.example.com/crm-api
format = form
param = cmd => contact
param = phone => ${number}
timeout = 1500
cache = 300

[click]
type = originate
path = crm-api
token = s3cret-token
context = from-internal
";

    #[test]
    fn switches_and_filters_are_checked_and_kept() {
        let (c, errors) = parse(
            "
[sales-crm]
type = webhook
url = http://crm/a
enabled = no
called = 74951234567|74951234568
ext = 10[0-9]

[lookup-off]
type = lookup
url = http://crm/l
enabled = no

[click-off]
type = originate
path = off
token = t0ken-long-enough
context = from-internal
enabled = false

[bad]
type = webhook
url = http://crm/b
enabled = maybe
caller = 7916(
",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].to_string().contains("[bad] enabled:"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1]
                .to_string()
                .contains("[bad] caller: bad regular expression"),
            "{}",
            errors[1]
        );
        let sales = c.sections.iter().find(|s| s.name == "sales-crm").unwrap();
        assert!(!sales.enabled);
        let w = c.webhook("sales-crm").unwrap();
        let fields: Vec<(&str, &str)> = w
            .filters
            .iter()
            .map(|f| (f.field, f.pattern.as_str()))
            .collect();
        assert_eq!(
            fields,
            [("called", "74951234567|74951234568"), ("ext", "10[0-9]")]
        );
        assert!(c.disabled("lookup-off") && c.lookup("lookup-off").is_none());
        assert!(
            c.originate_at("off").is_none(),
            "a switched-off endpoint is not served"
        );
        assert!(!c.disabled("nosuch"));
    }

    #[test]
    fn a_good_file_loads_every_section() {
        let (c, errors) = parse(GOOD);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            c.general.internal_contexts,
            ["from-internal", "from-office"]
        );
        assert_eq!(c.general.repeat_window_days, 30);
        let w = c.webhook("crm").unwrap();
        assert!(w.wants(EventKind::End, Direction::In));
        assert!(!w.wants(EventKind::Answer, Direction::In));
        assert!(!w.wants(EventKind::End, Direction::Out));
        assert_eq!(w.timeout, std::time::Duration::from_millis(2500));
        assert_eq!(w.retry.len(), 2);
        let l = c.lookup("crm-contact").unwrap();
        let req = l.render("+79161234567").unwrap();
        assert_eq!(req.body, b"cmd=contact&phone=%2B79161234567");
        assert_eq!(c.originate_at("/crm-api/").unwrap().0, "click");
    }

    #[test]
    fn batch_window_defaults_to_80ms_and_refuses_what_is_out_of_range() {
        let (c, errors) = parse("[general]\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.general.batch_window, std::time::Duration::from_millis(80));
        let (c, errors) = parse("[general]\nbatch_window = 20ms\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.general.batch_window, std::time::Duration::from_millis(20));
        let (c, errors) = parse("[general]\nbatch_window = 5s\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = errors[0].to_string();
        assert!(
            e.contains("webhook.conf:2 [general] batch_window") && e.contains("1s"),
            "{e}"
        );
        assert_eq!(
            c.general.batch_window,
            std::time::Duration::from_millis(80),
            "the bad value is not taken"
        );
    }

    #[test]
    fn pipeline_defaults_to_16_takes_no_and_refuses_what_is_out_of_range() {
        let hook = "[crm]\ntype = webhook\nurl = http://127.0.0.1:9/hook\n";
        let (c, errors) = parse(hook);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.webhook("crm").unwrap().pipeline, 16);
        for (v, want) in [("4", 4), ("1", 1), ("no", 1), ("64", 64)] {
            let (c, errors) = parse(&format!("{hook}pipeline = {v}\n"));
            assert!(errors.is_empty(), "{v}: {errors:?}");
            assert_eq!(c.webhook("crm").unwrap().pipeline, want, "{v}");
        }
        for v in ["0", "65", "yes"] {
            let (_, errors) = parse(&format!("{hook}pipeline = {v}\n"));
            let e = errors.first().map(ToString::to_string).unwrap_or_default();
            assert!(
                e.contains("webhook.conf:4 [crm] pipeline") && e.contains("1 to 64"),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn each_bad_line_names_file_line_section_key_and_skips_only_its_section() {
        let text = "
[ok]
type = webhook
url = http://127.0.0.1:1/ok

[unknown-key]
type = webhook
url = http://x/
colour = blue

[bad-format]
type = webhook
url = http://x/
format = xml

[bad-url]
type = webhook
url = ftp://x/

[unclosed]
type = webhook
url = http://x/
param = a => ${call_id

[bad-fn]
type = webhook
url = http://x/
param = a => ${sha512(x)}

[bad-preset]
type = webhook
preset = acme
url = http://x/

[bad-method]
type = webhook
url = http://x/
method = DELETE

[no-type]
url = http://x/

[bad-concurrency]
type = webhook
url = http://x/
concurrency = 0
";
        let (c, errors) = parse(text);
        assert_eq!(
            c.sections
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["ok"]
        );
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let expect = [
            "webhook.conf:9 [unknown-key] colour: unknown key `colour` for type = webhook; section skipped",
            "webhook.conf:14 [bad-format] format: unknown format `xml` (query, form, json, jsonrpc or raw); section skipped",
            "webhook.conf:18 [bad-url] url: not an http(s) URL: ftp://x/; section skipped",
            "webhook.conf:23 [unclosed] param: unclosed ${call_id; section skipped",
            "webhook.conf:28 [bad-fn] param: unknown function sha512() (known: md5, sha1, sha256, crc32); section skipped",
            "webhook.conf:32 [bad-preset] preset: unknown preset `acme` (roistat, mango, xvb, calltracking, callkeeper)",
            "webhook.conf:38 [bad-method] method: unknown method `DELETE` (GET, POST or PUT); section skipped",
            "webhook.conf:41 [no-type]: missing `type` (webhook, lookup or originate)",
            "webhook.conf:46 [bad-concurrency] concurrency: `0` is not a number from 1 to 64; section skipped",
        ];
        for e in expect {
            assert!(
                shown.iter().any(|s| s == e),
                "missing error:\n  {e}\ngot:\n  {}",
                shown.join("\n  ")
            );
        }
    }

    #[test]
    fn reload_keeps_the_previous_version_of_a_section_that_broke() {
        let (old, _) =
            parse("[a]\ntype = webhook\nurl = http://a/\n[b]\ntype = webhook\nurl = http://b/\n");
        let raw = RawConfig::parse_text(
            "webhook.conf",
            "[a]\ntype = webhook\nurl = http://a2/\n[b]\ntype = webhook\nurl = gopher://b/\n",
        );
        let (new, errors) = Config::reload(&old, &raw);
        assert_eq!(
            new.webhook("a").unwrap().request.url,
            crate::core::render::template::Template::parse("http://a2/").unwrap()
        );
        assert_eq!(new.webhook("b"), old.webhook("b"));
        assert!(errors
            .iter()
            .any(|e| e.section == "b" && e.reason.contains("keeping the previous version")));
    }

    #[test]
    fn referenced_variables_are_the_non_builtin_names() {
        let (c, _) = parse("[a]\ntype = webhook\nurl = http://a/?s=${SRC}\nparam = x => ${UTM_SOURCE}\nparam = y => ${sha1(${SECRET_ID}:${call_id})}\n");
        let mut v: Vec<_> = c.referenced_variables().into_iter().collect();
        v.sort();
        assert_eq!(v, ["SECRET_ID", "SRC", "UTM_SOURCE"]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn no_config_text_panics(text in "(\\[[a-z]{0,4}\\]\n|[a-z_]{0,12} ?=>? ?[ -~]{0,40}\n|\\$\\{[a-z(]{0,8}\\}?\n){0,12}") {
            let _ = parse(&text);
        }

        #[test]
        fn no_template_panics(t in "[$ {}()a-z0-9:|_.]{0,60}") {
            let _ = crate::core::render::template::Template::parse(&t);
            let _ = crate::core::render::payload::Param::parse(&format!("x => {t}"));
        }
    }
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn the_shipped_sample_loads_without_errors() {
        let text = include_str!("../../../asterisk/webhook.conf.sample");
        let (c, errors) = Config::from_raw(&RawConfig::parse_text("webhook.conf.sample", text));
        assert!(
            errors.is_empty(),
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(c.sections.len(), 3);
    }
}
