//! The part of a section that describes one HTTP request (url, method, format, params, headers,
//! body), shared by `type = webhook` and `type = lookup`, and its rendering into an
//! [`HttpRequest`].

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::core::model::call::EventKind;
use crate::core::model::request::{HttpRequest, Method};
use crate::core::model::value::{FieldSource, Value};
use crate::core::render::payload::{
    flat_pairs, is_flat, json_object, urlencode, write_flat_json_object, Format, Param,
};
use crate::core::render::template::{DateFormat, FormatContext, Template};

/// Characters a value keeps unescaped inside a URL (RFC 3986 unreserved).
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a request could not be rendered for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A param and the events it is sent for (`None`: all). Presets send different fields at
/// `start` and `end` (Roistat's two objects); `param =` lines written by hand go to every event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventParam {
    pub param: Param,
    pub events: Option<Vec<EventKind>>,
}

/// How to build one HTTP request from fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    pub url: Template,
    pub method: Method,
    /// `None` until set: defaults to `query` for GET and `json` otherwise.
    pub format: Option<Format>,
    pub params: Vec<EventParam>,
    /// Whether every param is one plain name, none appended or repeated ([`is_flat`]), so a
    /// JSON body is written straight out instead of built as an object first. Decided here, as
    /// params are set, rather than for every request; true of any event's share of them too.
    pub flat_params: bool,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    pub content_type: Option<String>,
    pub jsonrpc_method: Option<String>,
    pub ctx: FormatContext,
    /// `type = nats`: `url` holds the `subject` template (a NATS subject, not a URL).
    pub subject: bool,
}

impl RequestSpec {
    /// An empty spec whose times use the `[general]` defaults.
    pub fn new(ctx: FormatContext) -> RequestSpec {
        RequestSpec {
            url: Template::default(),
            method: Method::Post,
            format: None,
            params: Vec::new(),
            flat_params: true,
            headers: Vec::new(),
            body: None,
            content_type: None,
            jsonrpc_method: None,
            ctx,
            subject: false,
        }
    }

    /// The format in force.
    pub fn format(&self) -> Format {
        self.format.unwrap_or(if self.method == Method::Get {
            Format::Query
        } else {
            Format::Json
        })
    }

    /// Applies one key if it describes the request; `None` when the key is not a request key.
    pub fn apply(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let v = value.trim();
        let r = match key {
            "url" if self.subject => return None,
            "subject" if self.subject => parse_subject(v).map(|t| self.url = t),
            "url" => parse_url(v).map(|t| self.url = t),
            "method" => Method::parse(v)
                .map(|m| self.method = m)
                .ok_or_else(|| format!("unknown method `{v}` (GET, POST or PUT)")),
            "format" => Format::parse(v)
                .map(|f| self.format = Some(f))
                .ok_or_else(|| format!("unknown format `{v}` (query, form, json, jsonrpc or raw)")),
            "param" => Param::parse(v).map(|p| self.set_param(p, None)),
            "header" => parse_header(v).map(|h| self.headers.push(h)),
            "body" => Template::parse(v)
                .map(|t| self.body = Some(t))
                .map_err(|e| e.to_string()),
            "content_type" => {
                self.content_type = Some(v.to_string());
                Ok(())
            }
            "jsonrpc_method" => {
                self.jsonrpc_method = Some(v.to_string());
                Ok(())
            }
            "date_format" => DateFormat::parse(v)
                .map(|d| self.ctx.date_format = d)
                .map_err(|e| e.to_string()),
            "timezone" => v
                .parse::<chrono_tz::Tz>()
                .map(|tz| self.ctx.timezone = tz)
                .map_err(|_| format!("unknown time zone `{v}` (e.g. Europe/Moscow, UTC)")),
            _ => return None,
        };
        Some(r)
    }

    /// Adds a param, replacing an earlier one of the same name and events (so a section's own
    /// `param` overrides its preset's).
    pub fn set_param(&mut self, param: Param, events: Option<Vec<EventKind>>) {
        let name = param.flat_name();
        let replaced = |p: &EventParam| {
            p.param.flat_name() == name && (events.is_none() || p.events == events)
        };
        let new = EventParam {
            param,
            events: events.clone(),
        };
        if new.param.append {
            self.params.push(new);
            self.flat_params = false;
            return;
        }
        // An override keeps the overridden param's place, so presets keep the document's order.
        match self.params.iter().position(replaced) {
            Some(at) => {
                self.params[at] = new;
                let mut i = at + 1;
                while i < self.params.len() {
                    if replaced(&self.params[i]) {
                        self.params.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.params.push(new),
        }
        self.flat_params = is_flat(self.params.iter().map(|p| &p.param));
    }

    /// Checks what only makes sense once every key is read.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.url == Template::default() && self.subject {
            return Err((
                "subject",
                "missing (e.g. subject = pbx.${direction}.${event})".into(),
            ));
        }
        if self.url == Template::default() {
            return Err(("url", "missing (every request section needs a url)".into()));
        }
        if self.format() == Format::Raw && self.body.is_none() {
            return Err(("body", "format = raw needs a body template".into()));
        }
        if self.format() != Format::Query
            && self.method == Method::Get
            && self.format() != Format::Raw
        {
            // GET with a body is legal HTTP but most servers ignore it: say so rather than guess.
            return Err((
                "format",
                "method = GET sends params in the query string: use format = query".into(),
            ));
        }
        Ok(())
    }

    fn params_for(&self, src: &dyn FieldSource) -> Vec<&Param> {
        let event = match src.field("event") {
            Some(Value::Str(e)) => EventKind::parse(&e),
            _ => None,
        };
        self.params
            .iter()
            .filter(|p| match (&p.events, event) {
                (None, _) => true,
                (Some(evs), Some(e)) => evs.contains(&e),
                (Some(_), None) => true,
            })
            .map(|p| &p.param)
            .collect()
    }

    /// Writes the params' JSON object: straight out when they are flat, else built and then
    /// serialized.
    fn write_json_params(
        &self,
        out: &mut Vec<u8>,
        params: &[&Param],
        src: &dyn FieldSource,
    ) -> serde_json::Result<()> {
        if self.flat_params {
            write_flat_json_object(out, params.iter().copied(), src, &self.ctx)
        } else {
            serde_json::to_writer(out, &json_object(params.iter().copied(), src, &self.ctx))
        }
    }

    /// Writes `{"jsonrpc":"2.0","method":…,"params":{…},"id":…}`, in that order.
    fn write_json_rpc(
        &self,
        out: &mut Vec<u8>,
        params: &[&Param],
        src: &dyn FieldSource,
        id: &str,
    ) -> serde_json::Result<()> {
        let method = self.jsonrpc_method.as_deref().unwrap_or("call.event");
        out.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
        serde_json::to_writer(&mut *out, method)?;
        out.extend_from_slice(br#","params":"#);
        self.write_json_params(out, params, src)?;
        out.extend_from_slice(br#","id":"#);
        serde_json::to_writer(&mut *out, id)?;
        out.push(b'}');
        Ok(())
    }

    /// Renders the request for one event (or one lookup).
    pub fn render(&self, src: &dyn FieldSource) -> Result<HttpRequest, RenderError> {
        let params = self.params_for(src);
        let mut url = if self.subject {
            // A value is one subject token: no separators, wildcards or spaces in it.
            self.url.render_with(src, &self.ctx, &|v| {
                v.chars()
                    .map(|c| {
                        if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                            '_'
                        } else {
                            c
                        }
                    })
                    .collect()
            })
        } else {
            self.url.render_with(src, &self.ctx, &|v| {
                utf8_percent_encode(v, URL_VALUE).to_string()
            })
        };
        let format = self.format();
        let body = match format {
            Format::Query => {
                let q = urlencode(&flat_pairs(params.iter().copied(), src, &self.ctx));
                if !q.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&q);
                }
                Vec::new()
            }
            Format::Form => {
                urlencode(&flat_pairs(params.iter().copied(), src, &self.ctx)).into_bytes()
            }
            Format::Json => {
                // Sized for a typical payload: a growing Vec reallocates about ten times.
                let mut body = Vec::with_capacity(1024);
                self.write_json_params(&mut body, &params, src)
                    .map_err(|e| RenderError(e.to_string()))?;
                body
            }
            Format::JsonRpc => {
                let id = match (src.field("call_id"), src.field("event")) {
                    (Some(Value::Str(c)), Some(Value::Str(e))) => format!("{c}-{e}"),
                    (Some(Value::Str(c)), _) => c,
                    _ => "1".to_string(),
                };
                let mut body = Vec::with_capacity(1024);
                self.write_json_rpc(&mut body, &params, src, &id)
                    .map_err(|e| RenderError(e.to_string()))?;
                body
            }
            Format::Raw => self
                .body
                .as_ref()
                .map(|b| b.render_text(src, &self.ctx).into_bytes())
                .unwrap_or_default(),
        };
        if self.subject {
            if url.is_empty() || url.split('.').any(str::is_empty) {
                return Err(RenderError(format!(
                    "rendered subject has an empty token: `{url}`"
                )));
            }
        } else if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RenderError(format!("rendered url is not http(s): {url}")));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(ct) = self
            .content_type
            .as_deref()
            .or(format.default_content_type())
        {
            if format != Format::Query || self.content_type.is_some() {
                headers.push(("Content-Type".into(), ct.to_string()));
            }
        }
        for (name, t) in &self.headers {
            // Header injection guard: a value can never start a new header line.
            let value: String = t
                .render_text(src, &self.ctx)
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect();
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value));
        }
        Ok(HttpRequest {
            method: self.method,
            url,
            headers,
            body,
        })
    }

    /// Every field the templates read.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self.url.fields().into_iter().map(String::from).collect();
        for p in &self.params {
            out.extend(p.param.template.fields().into_iter().map(String::from));
        }
        for (_, t) in &self.headers {
            out.extend(t.fields().into_iter().map(String::from));
        }
        if let Some(b) = &self.body {
            out.extend(b.fields().into_iter().map(String::from));
        }
        out
    }
}

fn parse_url(v: &str) -> Result<Template, String> {
    let lower = v.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("not an http(s) URL: {v}"));
    }
    if v.len() <= "https://".len() || v.contains(char::is_whitespace) {
        return Err(format!("not a valid URL: {v}"));
    }
    Template::parse(v).map_err(|e| e.to_string())
}

fn parse_subject(v: &str) -> Result<Template, String> {
    if v.is_empty() || v.contains(char::is_whitespace) || v.starts_with('.') || v.ends_with('.') {
        return Err(format!(
            "not a NATS subject: `{v}` (e.g. pbx.${{direction}}.${{event}})"
        ));
    }
    Template::parse(v).map_err(|e| e.to_string())
}

fn parse_header(v: &str) -> Result<(String, Template), String> {
    let (name, value) = v
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got `{v}`"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("bad header name `{name}`"));
    }
    Ok((
        name.to_string(),
        Template::parse(value.trim()).map_err(|e| e.to_string())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fields(HashMap<&'static str, Value>);
    impl FieldSource for Fields {
        fn field(&self, name: &str) -> Option<Value> {
            self.0.get(name).cloned()
        }
    }

    fn spec(format: &str, params: &[&str]) -> RequestSpec {
        let mut spec = RequestSpec::new(FormatContext::default());
        for (k, v) in [("url", "http://example.com/hook"), ("format", format)] {
            spec.apply(k, v).unwrap().unwrap();
        }
        for p in params {
            spec.apply("param", p).unwrap().unwrap();
        }
        spec
    }

    fn fields() -> Fields {
        Fields(HashMap::from([
            ("call_id", Value::Str("17.5".into())),
            ("event", Value::Str("end".into())),
            ("caller", Value::Str("a \"b\"\n".into())),
            ("duration", Value::Int(20)),
        ]))
    }

    /// The body as it was built before the flat fast path: the object, then the envelope.
    fn general_body(spec: &RequestSpec, src: &Fields) -> Vec<u8> {
        let params = spec.params_for(src);
        let obj = json_object(params.iter().copied(), src, &spec.ctx);
        match spec.format() {
            Format::JsonRpc => serde_json::to_vec(&serde_json::json!({
                "jsonrpc": "2.0",
                "method": spec.jsonrpc_method.clone().unwrap_or_else(|| "call.event".into()),
                "params": obj,
                "id": "17.5-end",
            }))
            .unwrap(),
            _ => serde_json::to_vec(&obj).unwrap(),
        }
    }

    #[test]
    fn json_and_jsonrpc_bodies_are_the_same_flat_or_not() {
        let flat = [
            "id => ${call_id}",
            "caller => ${caller}",
            "d => ${duration}",
        ];
        let nested = [
            "id => ${call_id}",
            "x.caller => ${caller}",
            "tags[] => ${duration}",
        ];
        for format in ["json", "jsonrpc"] {
            for (params, is_flat) in [(&flat, true), (&nested, false)] {
                let spec = spec(format, params);
                assert_eq!(spec.flat_params, is_flat);
                let body = spec.render(&fields()).unwrap().body;
                assert_eq!(
                    String::from_utf8(body).unwrap(),
                    String::from_utf8(general_body(&spec, &fields())).unwrap(),
                    "{format} {params:?}"
                );
            }
        }
    }

    #[test]
    fn flat_params_follows_every_param_set() {
        let mut spec = spec("json", &["a => 1", "b => 2"]);
        assert!(spec.flat_params);
        // Replacing a param keeps the set flat; a second `b` for other events does not.
        spec.apply("param", "a => 3").unwrap().unwrap();
        assert!(spec.flat_params);
        spec.set_param(Param::parse("b => 4").unwrap(), Some(vec![EventKind::End]));
        assert!(!spec.flat_params);
    }
}
