//! The part of a section that describes one HTTP request (url, method, format, params, headers,
//! body), shared by `type = webhook` and `type = lookup`, and its rendering into an
//! [`HttpRequest`].

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::core::model::call::EventKind;
use crate::core::model::request::{HttpRequest, Method};
use crate::core::model::value::{FieldSource, Value};
use crate::core::render::layout::Layout;
use crate::core::render::payload::{flat_pairs, json_object, urlencode, Format, Param};
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

/// The events a param set's JSON layout is worked out for (`None`: a request with no event, a
/// lookup, which gets every param).
const LAYOUT_EVENTS: [Option<EventKind>; 5] = [
    None,
    Some(EventKind::Start),
    Some(EventKind::Answer),
    Some(EventKind::Transfer),
    Some(EventKind::End),
];

/// How to build one HTTP request from fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    pub url: Template,
    pub method: Method,
    /// `None` until set: defaults to `query` for GET and `json` otherwise.
    pub format: Option<Format>,
    /// Set only through [`RequestSpec::set_param`], which keeps `layouts` in step.
    params: Vec<EventParam>,
    /// The JSON layout of each event's share of the params ([`LAYOUT_EVENTS`] order), where it
    /// is fixed: worked out as params are set rather than for every request.
    layouts: Vec<Option<Layout>>,
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
            layouts: Vec::new(),
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
            self.lay_out();
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
        self.lay_out();
    }

    /// The params in order, each with the events it is for.
    pub fn params(&self) -> &[EventParam] {
        &self.params
    }

    /// Works out the JSON layout of each event's share of the params.
    fn lay_out(&mut self) {
        self.layouts = LAYOUT_EVENTS
            .iter()
            .map(|e| Layout::of(&self.params_for_event(*e)))
            .collect();
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

    /// The event a request is for, from the source's `event` field (none for a lookup).
    fn event_of(src: &dyn FieldSource) -> Option<EventKind> {
        if let Some(e) = src.text("event") {
            return EventKind::parse(e);
        }
        match src.field("event") {
            Some(Value::Str(e)) => EventKind::parse(&e),
            _ => None,
        }
    }

    /// The params that go with `event`: all of them when there is none.
    fn params_for_event(&self, event: Option<EventKind>) -> Vec<&Param> {
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

    /// Writes the JSON object of `params` (`event`'s share): straight out in its layout when
    /// that is fixed, else built and then serialized.
    fn write_json_params(
        &self,
        out: &mut Vec<u8>,
        event: Option<EventKind>,
        params: &[&Param],
        src: &dyn FieldSource,
    ) -> serde_json::Result<()> {
        let at = LAYOUT_EVENTS.iter().position(|e| *e == event);
        match at.and_then(|at| self.layouts.get(at)?.as_ref()) {
            Some(layout) if layout.fits(params.len()) => layout.write(out, params, src, &self.ctx),
            _ => serde_json::to_writer(out, &json_object(params.iter().copied(), src, &self.ctx)),
        }
    }

    /// Writes `{"jsonrpc":"2.0","method":…,"params":{…},"id":…}`, in that order.
    fn write_json_rpc(
        &self,
        out: &mut Vec<u8>,
        event: Option<EventKind>,
        params: &[&Param],
        src: &dyn FieldSource,
        id: &str,
    ) -> serde_json::Result<()> {
        let method = self.jsonrpc_method.as_deref().unwrap_or("call.event");
        out.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
        serde_json::to_writer(&mut *out, method)?;
        out.extend_from_slice(br#","params":"#);
        self.write_json_params(out, event, params, src)?;
        out.extend_from_slice(br#","id":"#);
        serde_json::to_writer(&mut *out, id)?;
        out.push(b'}');
        Ok(())
    }

    /// Renders the request for one event (or one lookup).
    pub fn render(&self, src: &dyn FieldSource) -> Result<HttpRequest, RenderError> {
        let event = Self::event_of(src);
        let params = self.params_for_event(event);
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
                self.write_json_params(&mut body, event, &params, src)
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
                self.write_json_rpc(&mut body, event, &params, src, &id)
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
    use crate::core::model::value::Fields;
    use std::collections::HashMap;

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

    /// The body as the general path builds it: the object, then the envelope.
    fn general_body(spec: &RequestSpec, src: &Fields) -> Vec<u8> {
        let params = spec.params_for_event(RequestSpec::event_of(src));
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

    fn body(spec: &RequestSpec, src: &Fields) -> String {
        String::from_utf8(spec.render(src).unwrap().body).unwrap()
    }

    #[test]
    fn json_and_jsonrpc_bodies_are_the_same_laid_out_or_not() {
        let fixed = [
            "id => ${call_id}",
            "x.caller => ${caller}",
            "tags[] => ${duration}",
            "x.d => ${duration}",
            "tags[] => a",
        ];
        let merged = ["id => ${call_id}", "x => ${caller}", "x.d => ${duration}"];
        for format in ["json", "jsonrpc"] {
            for (params, laid_out) in [(&fixed[..], true), (&merged[..], false)] {
                let spec = spec(format, params);
                assert_eq!(spec.layouts[0].is_some(), laid_out, "{params:?}");
                assert_eq!(
                    body(&spec, &fields()),
                    String::from_utf8(general_body(&spec, &fields())).unwrap(),
                    "{format} {params:?}"
                );
            }
        }
        assert_eq!(
            body(&spec("json", &fixed), &fields()),
            r#"{"id":"17.5","x":{"caller":"a \"b\"\n","d":20},"tags":[20,"a"]}"#
        );
    }

    #[test]
    fn each_event_gets_the_layout_of_its_own_params() {
        // `a.x` only at start: at the end `b` comes first, and `a` holds only `y`.
        let mut spec = spec("json", &["b => 2", "a.y => ${duration}"]);
        spec.set_param(
            Param::parse("a.x => 1").unwrap(),
            Some(vec![EventKind::Start]),
        );
        spec.params.rotate_right(1); // a.x first: the order a preset's document gives
        spec.lay_out();
        let mut start = fields();
        start.0.insert("event", Value::Str("start".into()));
        assert_eq!(body(&spec, &start), r#"{"a":{"x":"1","y":20},"b":"2"}"#);
        assert_eq!(body(&spec, &fields()), r#"{"b":"2","a":{"y":20}}"#);
        // A key used two ways at one event only: that event goes the general way.
        spec.set_param(
            Param::parse("b.c => 3").unwrap(),
            Some(vec![EventKind::End]),
        );
        let at = |e| LAYOUT_EVENTS.iter().position(|x| *x == e).unwrap();
        assert!(spec.layouts[at(Some(EventKind::Start))].is_some());
        assert!(spec.layouts[at(Some(EventKind::End))].is_none());
        assert_eq!(
            body(&spec, &fields()),
            String::from_utf8(general_body(&spec, &fields())).unwrap()
        );
        // Params changed behind the spec's back: the stale layout is not used.
        spec.params.pop();
        spec.params.push(EventParam {
            param: Param::parse("z => 9").unwrap(),
            events: None,
        });
        assert_eq!(
            body(&spec, &fields()),
            String::from_utf8(general_body(&spec, &fields())).unwrap()
        );
        // The same with a set that has a layout: one made of fewer params is not used.
        let mut spec = self::spec("json", &["a => 1"]);
        spec.params.push(EventParam {
            param: Param::parse("z => 9").unwrap(),
            events: None,
        });
        assert_eq!(body(&spec, &fields()), r#"{"a":"1","z":"9"}"#);
    }
}
