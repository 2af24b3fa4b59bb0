//! Payload encoding: a section's `param` lines become a query string, a form, a JSON object,
//! a JSON-RPC call, or (format = raw) the section's `body` template.
//!
//! Names: `a.b` nests objects (`{"a":{"b":…}}`, in query/form `a[b]=…`); a trailing `[]`
//! appends to an array (`tags[]`: `{"tags":[…]}`, in query/form `tags[]=…`).

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Number, Value as Json};

use crate::core::model::value::{FieldSource, Value};
use crate::core::render::template::{value_text, FormatContext, Template};

/// How a request carries its params.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// In the URL's query string; no body.
    Query,
    /// `application/x-www-form-urlencoded` body.
    Form,
    Json,
    /// `{"jsonrpc":"2.0","method":…,"params":{…},"id":…}`.
    JsonRpc,
    /// The `body` template, verbatim.
    Raw,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "query" => Format::Query,
            "form" => Format::Form,
            "json" => Format::Json,
            "jsonrpc" | "json-rpc" => Format::JsonRpc,
            "raw" => Format::Raw,
            _ => return None,
        })
    }

    /// The Content-Type this format sends unless `content_type` says otherwise.
    pub fn default_content_type(self) -> Option<&'static str> {
        match self {
            Format::Query => None,
            Format::Form => Some("application/x-www-form-urlencoded"),
            Format::Json | Format::JsonRpc => Some("application/json"),
            Format::Raw => Some("text/plain; charset=utf-8"),
        }
    }
}

/// A JSON type a param is forced to with `|int`, `|str` or `|bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedType {
    Int,
    Str,
    Bool,
}

/// One `param = name => template[|type]` line, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Object path, e.g. `["visit", "utm_source"]`.
    pub path: Vec<String>,
    /// Trailing `[]`: append to an array rather than set.
    pub append: bool,
    pub template: Template,
    pub forced: Option<ForcedType>,
    /// Provider words for our words (presets: `ANSWER` → `Success`); applied to the rendered
    /// text before the type is forced. Unlisted values pass through.
    pub table: Vec<(String, Value)>,
    /// Sent instead of a missing value (presets: Roistat's `"custom_fields": []`).
    pub default: Option<serde_json::Value>,
    /// Times in this param use this format instead of the section's (presets: CallKeeper's
    /// `date` and `date_timestamp` side by side).
    pub format: Option<FormatContext>,
}

impl Param {
    /// Parses `name => template[|int|str|bool]`.
    pub fn parse(line: &str) -> Result<Param, String> {
        let (name, value) = line
            .split_once("=>")
            .ok_or_else(|| format!("expected `name => template`, got `{line}`"))?;
        let name = name.trim();
        let mut value = value.trim();
        let mut forced = None;
        for (suffix, ty) in [
            ("|int", ForcedType::Int),
            ("|str", ForcedType::Str),
            ("|bool", ForcedType::Bool),
        ] {
            if let Some(v) = value.strip_suffix(suffix) {
                value = v.trim_end();
                forced = Some(ty);
                break;
            }
        }
        let (name, append) = match name.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let path: Vec<String> = name.split('.').map(str::to_string).collect();
        if path
            .iter()
            .any(|s| s.is_empty() || s.contains(['[', ']', '=', '&', ' ']))
        {
            return Err(format!(
                "bad param name `{name}`: use letters, digits, `_`, `-`, dots to nest and a trailing [] to append"
            ));
        }
        let template = Template::parse(value).map_err(|e| e.to_string())?;
        Ok(Param {
            path,
            append,
            template,
            forced,
            table: Vec::new(),
            default: None,
            format: None,
        })
    }

    /// The name as query strings and forms write it: `visit[utm_source]`, `tags[]`.
    pub fn flat_name(&self) -> String {
        let mut out = self.path[0].clone();
        for seg in &self.path[1..] {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        }
        if self.append {
            out.push_str("[]");
        }
        out
    }

    /// The value, typed: a bare field keeps its type; `|int` etc. convert; missing is `Null`.
    pub fn value(&self, src: &dyn FieldSource, ctx: &FormatContext) -> Value {
        let ctx = self.format.as_ref().unwrap_or(ctx);
        let mut v = self.template.render_value(src, ctx);
        if !self.table.is_empty() {
            let text = value_text(&v, ctx);
            if let Some((_, mapped)) = self.table.iter().find(|(k, _)| *k == text) {
                v = mapped.clone();
            }
        }
        let Some(ty) = self.forced else { return v };
        if v == Value::Null {
            return v;
        }
        let text = value_text(&v, ctx);
        match ty {
            ForcedType::Str => Value::Str(text),
            ForcedType::Int => match v {
                Value::Int(_) => v,
                Value::Bool(b) => Value::Int(b as i64),
                _ => text
                    .trim()
                    .parse::<i64>()
                    .map(Value::Int)
                    .unwrap_or(Value::Null),
            },
            ForcedType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Value::Bool(true),
                "0" | "false" | "no" | "off" | "" => Value::Bool(false),
                _ => Value::Null,
            },
        }
    }
}

/// A value as JSON (times in `ctx`'s format).
pub(crate) fn to_json(v: Value, ctx: &FormatContext) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Str(s) => Json::String(s),
        Value::Int(i) => Json::Number(Number::from(i)),
        Value::Bool(b) => Json::Bool(b),
        Value::Time(t) => to_json(ctx.time(t), ctx),
        Value::List(items) => Json::Array(items.into_iter().map(|v| to_json(v, ctx)).collect()),
        Value::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), to_json(v, ctx)))
                .collect(),
        ),
    }
}

/// A JSON object built in param order and written as it stands. Keys are the params' own
/// names, borrowed: a payload has a few dozen, so a scan beats hashing them, and nothing is
/// copied until it is serialized.
#[derive(Debug, Default)]
pub struct JsonObject<'a>(Vec<(Cow<'a, str>, Node<'a>)>);

#[derive(Debug)]
enum Node<'a> {
    Value(Json),
    Array(Vec<Json>),
    Object(JsonObject<'a>),
}

impl<'a> JsonObject<'a> {
    /// The value under `key`, made by `make` (and added last) when there is none.
    fn entry(&mut self, key: &'a str, make: impl FnOnce() -> Node<'a>) -> &mut Node<'a> {
        let at = match self.0.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                self.0.push((Cow::Borrowed(key), make()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Sets `key`, in its first place if it was set before.
    fn set(&mut self, key: &'a str, value: Json) {
        *self.entry(key, || Node::Value(Json::Null)) = Node::Value(value);
    }
}

impl<'a> Node<'a> {
    /// An object to nest into: a value that is an object already is opened up, anything else
    /// is replaced by an empty one.
    fn as_object(&mut self) -> &mut JsonObject<'a> {
        if !matches!(self, Node::Object(_)) {
            let opened = match std::mem::replace(self, Node::Value(Json::Null)) {
                Node::Value(Json::Object(m)) => JsonObject(
                    m.into_iter()
                        .map(|(k, v)| (Cow::Owned(k), Node::Value(v)))
                        .collect(),
                ),
                _ => JsonObject::default(),
            };
            *self = Node::Object(opened);
        }
        match self {
            Node::Object(o) => o,
            _ => unreachable!("just made an object"),
        }
    }

    /// An array to append to: a value that is an array already keeps its items, anything else
    /// is replaced by an empty one.
    fn as_array(&mut self) -> &mut Vec<Json> {
        if !matches!(self, Node::Array(_)) {
            let items = match std::mem::replace(self, Node::Value(Json::Null)) {
                Node::Value(Json::Array(items)) => items,
                _ => Vec::new(),
            };
            *self = Node::Array(items);
        }
        match self {
            Node::Array(a) => a,
            _ => unreachable!("just made an array"),
        }
    }
}

impl Serialize for JsonObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Value(v) => v.serialize(s),
            Node::Array(items) => items.serialize(s),
            Node::Object(o) => o.serialize(s),
        }
    }
}

/// Renders params into a JSON object, nesting dotted names and appending `[]` names.
pub fn json_object<'a>(
    params: impl IntoIterator<Item = &'a Param>,
    src: &dyn FieldSource,
    ctx: &FormatContext,
) -> JsonObject<'a> {
    let params = params.into_iter();
    let mut root = JsonObject(Vec::with_capacity(params.size_hint().0));
    for p in params {
        let value = match (to_json(p.value(src, ctx), ctx), &p.default) {
            (Json::Null, Some(d)) => d.clone(),
            (v, _) => v,
        };
        let (last, parents) = p.path.split_last().expect("a param has a name");
        let mut obj = &mut root;
        for seg in parents {
            obj = obj
                .entry(seg, || Node::Object(JsonObject::default()))
                .as_object();
        }
        if p.append {
            obj.entry(last, || Node::Array(Vec::new()))
                .as_array()
                .push(value);
        } else {
            obj.set(last, value);
        }
    }
    root
}

/// Renders params as `name=value` pairs for a query string or form (missing values empty).
pub fn flat_pairs<'a>(
    params: impl IntoIterator<Item = &'a Param>,
    src: &dyn FieldSource,
    ctx: &FormatContext,
) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|p| {
            let text = match (p.value(src, ctx), &p.default) {
                (Value::Null, Some(serde_json::Value::String(d))) => d.clone(),
                (Value::Null, Some(d)) => d.to_string(),
                (v, _) => value_text(&v, ctx),
            };
            (p.flat_name(), text)
        })
        .collect()
}

/// URL-encodes pairs (`application/x-www-form-urlencoded`, UTF-8).
pub fn urlencode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::value::Fields;

    fn src() -> Fields {
        Fields::with([
            ("UTM_SOURCE", Value::Str("google".into())),
            ("caller_name", Value::Str("Вася & Co".into())),
        ])
    }

    fn params(lines: &[&str]) -> Vec<Param> {
        lines.iter().map(|l| Param::parse(l).unwrap()).collect()
    }

    #[test]
    fn json_nests_appends_and_keeps_types() {
        let p = params(&[
            "id => ${call_id}",
            "visit.utm_source => ${UTM_SOURCE}",
            "visit.utm_medium => ${UTM_MEDIUM}",
            "tags[] => a",
            "tags[] => ${duration}",
            "duration => ${duration}",
            "order_id => ${ORDER_ID}|int",
            "as_text => ${duration}|str",
            "flag => 1|bool",
            "deep.a.b[] => x",
        ]);
        let obj = json_object(&p, &src(), &FormatContext::default());
        assert_eq!(
            serde_json::to_string(&obj).unwrap(),
            r#"{"id":"17.5","visit":{"utm_source":"google","utm_medium":null},"tags":["a",20],"duration":20,"order_id":313,"as_text":"20","flag":true,"deep":{"a":{"b":["x"]}}}"#
        );
    }

    #[test]
    fn json_keys_set_twice_keep_their_first_place_and_lists_and_records_extend() {
        let mut src = src();
        src.0
            .insert("agents", Value::List(vec![Value::Str("101".into())]));
        src.0.insert(
            "target",
            Value::Record(vec![("ext", Value::Str("102".into()))]),
        );
        let p = params(&[
            "a => 1",
            "b => 2",
            "a => 3",
            "x => 1",
            "x.y => 2",
            "z.y => 2",
            "z => 1",
            "agents => ${agents}",
            "agents[] => 103",
            "t => ${target}",
            "t.answered => yes",
        ]);
        let obj = json_object(&p, &src, &FormatContext::default());
        assert_eq!(
            serde_json::to_string(&obj).unwrap(),
            r#"{"a":"3","b":"2","x":{"y":"2"},"z":"1","agents":["101","103"],"t":{"ext":"102","answered":"yes"}}"#
        );
    }

    #[test]
    fn query_and_form_flatten_php_style_and_encode_utf8() {
        let p = params(&[
            "id => ${call_id}",
            "visit.utm_source => ${UTM_SOURCE}",
            "tags[] => a",
            "name => ${caller_name}",
            "none => ${NOPE}",
        ]);
        let pairs = flat_pairs(&p, &src(), &FormatContext::default());
        assert_eq!(
            urlencode(&pairs),
            "id=17.5&visit%5Butm_source%5D=google&tags%5B%5D=a&name=%D0%92%D0%B0%D1%81%D1%8F+%26+Co&none="
        );
    }

    #[test]
    fn bad_param_lines_are_errors() {
        assert!(Param::parse("no arrow").is_err());
        assert!(Param::parse("a..b => x").is_err());
        assert!(Param::parse("a => ${x").is_err());
        assert!(Param::parse(" => x").is_err());
    }
}
