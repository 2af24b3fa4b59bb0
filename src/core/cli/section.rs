//! `webhook show section <name>`: a section as loaded — preset expanded, defaults filled in —
//! so an administrator sees exactly what will be sent. Secrets and tokens are not shown.

use std::fmt::Write as _;

use crate::core::config::request_spec::RequestSpec;
use crate::core::config::values::duration_text;
use crate::core::config::{Section, SectionKind};
use crate::core::render::payload::ForcedType;

/// The section, one `key = value` per line, in `webhook.conf`'s own syntax.
pub fn text(s: &Section) -> String {
    let mut out = String::new();
    let kind = match &s.kind {
        SectionKind::Webhook(w) if w.nats.is_some() => "nats",
        SectionKind::Webhook(_) => "webhook",
        SectionKind::Lookup(_) => "lookup",
        SectionKind::Originate(_) => "originate",
    };
    let _ = writeln!(out, "[{}]", s.name);
    line(&mut out, "type", kind);
    line(&mut out, "enabled", if s.enabled { "yes" } else { "no" });
    match &s.kind {
        SectionKind::Webhook(w) => {
            if let Some(n) = &w.nats {
                line(&mut out, "url", &n.servers.join(", "));
                if let Some(u) = &n.user {
                    line(&mut out, "user", u);
                    line(&mut out, "password", "(set)");
                }
                if n.token.is_some() {
                    line(&mut out, "token", "(set)");
                }
                if let Some(c) = &n.creds {
                    line(&mut out, "creds", &c.display().to_string());
                }
                if let Some(ca) = &n.tls_ca {
                    line(&mut out, "tls_ca", &ca.display().to_string());
                }
                if n.tls {
                    line(&mut out, "tls", "yes");
                }
            }
            request(&mut out, &w.request);
            let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
            line(&mut out, "events", &events.join(", "));
            let dirs: Vec<&str> = w.directions.iter().map(|d| d.as_str()).collect();
            line(&mut out, "direction", &dirs.join(", "));
            for f in &w.filters {
                line(
                    &mut out,
                    f.field,
                    &format!("{}    ; whole value", f.pattern),
                );
            }
            line(&mut out, "timeout", &duration_text(w.timeout));
            let retry: Vec<String> = w.retry.iter().map(|d| duration_text(*d)).collect();
            line(&mut out, "retry", &retry.join(", "));
            line(&mut out, "concurrency", &w.concurrency.to_string());
            line(&mut out, "pipeline", &w.pipeline.to_string());
            if let Some(r) = &w.rate_limit {
                let per_s = 1.0 / r.interval.as_secs_f64();
                line(
                    &mut out,
                    "rate_limit",
                    &format!(
                        "{per_s:.3}/s    ; one request every {}",
                        duration_text(r.interval)
                    ),
                );
                line(&mut out, "rate_burst", &r.burst.to_string());
            }
            if w.secret.is_some() {
                line(
                    &mut out,
                    "secret",
                    "(set; Standard Webhooks signature headers)",
                );
            }
            if let Some(ca) = &w.tls_ca {
                line(&mut out, "tls_ca", &ca.display().to_string());
            }
        }
        SectionKind::Lookup(l) => {
            request(&mut out, &l.request);
            line(&mut out, "timeout", &duration_text(l.timeout));
            line(&mut out, "cache", &duration_text(l.cache));
            line(&mut out, "field", &l.default_field);
        }
        SectionKind::Originate(o) => {
            line(
                &mut out,
                "path",
                &format!("{}    ; /webhook/{}", o.path, o.path),
            );
            line(&mut out, "token", "(set)");
            line(&mut out, "context", &o.context);
            line(&mut out, "allowed_to", o.allowed_to.as_str());
            line(&mut out, "allowed_from", o.allowed_from.as_str());
            line(&mut out, "rate_limit", &format!("{}/min", o.rate_limit));
            line(&mut out, "ring_timeout", &duration_text(o.ring_timeout));
            if let Some(cid) = &o.caller_id {
                line(&mut out, "caller_id", cid);
            }
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key:<12} = {value}");
}

fn request(out: &mut String, r: &RequestSpec) {
    if r.subject {
        line(out, "subject", &r.url.to_string());
    } else {
        line(out, "url", &r.url.to_string());
        line(out, "method", r.method.as_str());
    }
    let format = format!("{:?}", r.format()).to_lowercase();
    line(out, "format", &format);
    if let Some(ct) = &r.content_type {
        line(out, "content_type", ct);
    }
    for (name, value) in &r.headers {
        let shown = if is_credential(name) {
            "(set)".to_string()
        } else {
            value.to_string()
        };
        line(out, "header", &format!("{name}: {shown}"));
    }
    for ep in r.params() {
        let p = &ep.param;
        let mut text = format!("{} => {}", p.flat_name(), p.template);
        match p.forced {
            Some(ForcedType::Int) => text.push_str("|int"),
            Some(ForcedType::Str) => text.push_str("|str"),
            Some(ForcedType::Bool) => text.push_str("|bool"),
            None => {}
        }
        let mut notes = Vec::new();
        if let Some(events) = &ep.events {
            let e: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
            notes.push(format!("at {}", e.join(", ")));
        }
        if !p.table.is_empty() {
            let words: Vec<String> = p
                .table
                .iter()
                .map(|(from, to)| {
                    format!(
                        "{from}→{}",
                        crate::core::render::template::value_text(to, &r.ctx)
                    )
                })
                .collect();
            notes.push(words.join(" "));
        }
        if let Some(d) = &p.default {
            notes.push(format!("default {d}"));
        }
        if !notes.is_empty() {
            text.push_str("    ; ");
            text.push_str(&notes.join("; "));
        }
        line(out, "param", &text);
    }
    if let Some(body) = &r.body {
        line(out, "body", &body.to_string());
    }
}

/// Headers that carry credentials (shown as set, never their value).
fn is_credential(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n.contains("token")
        || n.contains("key")
        || n.contains("secret")
        || n.starts_with("x-xvb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::raw::RawConfig;
    use crate::core::config::Config;

    #[test]
    fn a_preset_section_shows_its_expanded_params_and_hides_credentials() {
        let (c, errors) = Config::from_raw(&RawConfig::parse_text(
            "webhook.conf",
            "
[crm]
type = webhook
url = https://crm.example.com/hook?src=${direction}
header = Authorization: Bearer s3cret-value
param = id => ${call_id}
param = sig => ${sha256(${call_id}:salt)}
param = talk => ${duration}|int
secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
called = 7495.*
retry = 10s, 1m, 1h

[rs]
type = webhook
preset = roistat
url = https://cloud.roistat.com/api/v1/project/calltracking/phone-call?key=abc
",
        ));
        assert!(errors.is_empty(), "{errors:?}");
        let crm = text(&c.sections[0]);
        for want in [
            "[crm]",
            "type         = webhook",
            "enabled      = yes",
            "url          = https://crm.example.com/hook?src=${direction}",
            "param        = id => ${call_id}",
            "param        = sig => ${sha256(${call_id}:salt)}",
            "param        = talk => ${duration}|int",
            "called       = 7495.*",
            "retry        = 10s, 1m, 1h",
            "header       = Authorization: (set)",
        ] {
            assert!(crm.contains(want), "missing `{want}` in:\n{crm}");
        }
        assert!(
            !crm.contains("s3cret-value") && !crm.contains("whsec_"),
            "{crm}"
        );
        let rs = text(&c.sections[1]);
        assert!(
            rs.matches("param ").count() >= 5,
            "preset params expanded:\n{rs}"
        );
    }
}
