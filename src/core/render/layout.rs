//! A JSON payload's layout, worked out once when the config is loaded. When no key of a param
//! set is used two ways (set and nested into, or set and appended to), which keys each object
//! has and in what order does not depend on the values. A request's body is then written
//! straight out in that order, instead of being built as a tree and serialized
//! ([`json_object`], which stays for the sets where a value decides the shape).
//!
//! [`json_object`]: super::payload::json_object

use serde_json::Value as Json;

use crate::core::model::value::{FieldSource, Value};
use crate::core::render::payload::{to_json, Param};
use crate::core::render::template::FormatContext;

/// The keys of one object in order, each with what goes there.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    keys: Vec<(String, Slot)>,
    /// How many params the layout was made of: it describes that set and no other.
    params: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// The value of the param at this index (the last one of the name: it wins, in the place
    /// of the first).
    Value(usize),
    /// `name[]`: the values of these params, in order.
    Array(Vec<usize>),
    /// Dotted names: an object nested here.
    Object(Vec<(String, Slot)>),
}

impl Layout {
    /// The layout of these params, in this order; `None` when a key is used two ways, so that
    /// a value could decide the shape ([`json_object`]'s merging rules).
    ///
    /// [`json_object`]: super::payload::json_object
    pub fn of(params: &[&Param]) -> Option<Layout> {
        let mut keys: Vec<(String, Slot)> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let (last, parents) = p.path.split_last()?;
            let mut obj = &mut keys;
            for seg in parents {
                obj = match slot(obj, seg, || Slot::Object(Vec::new())) {
                    Slot::Object(inner) => inner,
                    _ => return None,
                };
            }
            let fresh = || {
                if p.append {
                    Slot::Array(Vec::new())
                } else {
                    Slot::Value(i)
                }
            };
            match (slot(obj, last, fresh), p.append) {
                (Slot::Value(v), false) => *v = i,
                (Slot::Array(items), true) => items.push(i),
                _ => return None,
            }
        }
        Some(Layout {
            keys,
            params: params.len(),
        })
    }

    /// Whether this layout was made of a set of `n` params (the caller's same set).
    pub fn fits(&self, n: usize) -> bool {
        self.params == n
    }

    /// Writes the object for `params` — the set the layout was made of — into `out`: the same
    /// bytes as serializing [`json_object`]'s.
    ///
    /// [`json_object`]: super::payload::json_object
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        params: &[&Param],
        src: &dyn FieldSource,
        ctx: &FormatContext,
    ) -> serde_json::Result<()> {
        write_object(out, &self.keys, params, src, ctx)
    }
}

/// The slot under `key`, made by `make` (and added last) when there is none.
fn slot<'a>(
    keys: &'a mut Vec<(String, Slot)>,
    key: &str,
    make: impl FnOnce() -> Slot,
) -> &'a mut Slot {
    let at = match keys.iter().position(|(k, _)| k == key) {
        Some(at) => at,
        None => {
            keys.push((key.to_string(), make()));
            keys.len() - 1
        }
    };
    &mut keys[at].1
}

fn write_object(
    out: &mut Vec<u8>,
    keys: &[(String, Slot)],
    params: &[&Param],
    src: &dyn FieldSource,
    ctx: &FormatContext,
) -> serde_json::Result<()> {
    out.push(b'{');
    for (n, (key, slot)) in keys.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key.as_str())?;
        out.push(b':');
        match slot {
            Slot::Value(i) => write_param(out, params[*i], src, ctx)?,
            Slot::Array(items) => {
                out.push(b'[');
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    write_param(out, params[*i], src, ctx)?;
                }
                out.push(b']');
            }
            Slot::Object(inner) => write_object(out, inner, params, src, ctx)?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// One param's value, or its default when it has none. A bare `${field}` the source holds as
/// text, with no table or type to apply, is written from where it is, without a copy.
fn write_param(
    out: &mut Vec<u8>,
    p: &Param,
    src: &dyn FieldSource,
    ctx: &FormatContext,
) -> serde_json::Result<()> {
    let plain = p.table.is_empty() && p.forced.is_none();
    let text = p
        .template
        .bare_field()
        .filter(|_| plain)
        .and_then(|f| src.text(f))
        .filter(|s| !s.is_empty());
    if let Some(s) = text {
        return serde_json::to_writer(out, s);
    }
    // Empty text is a missing value: the general way below gives it the default or null.
    match (p.value(src, ctx), &p.default) {
        (Value::Null, Some(d)) => serde_json::to_writer(out, d),
        (v, _) => write_value(out, v, ctx),
    }
}

/// Writes a value as [`to_json`] would make it, scalars without the detour.
fn write_value(out: &mut Vec<u8>, v: Value, ctx: &FormatContext) -> serde_json::Result<()> {
    match v {
        Value::Null => serde_json::to_writer(out, &Json::Null),
        Value::Str(s) => serde_json::to_writer(out, s.as_str()),
        Value::Int(i) => serde_json::to_writer(out, &i),
        Value::Bool(b) => serde_json::to_writer(out, &b),
        Value::Time(t) => write_value(out, ctx.time(t), ctx),
        v @ (Value::List(_) | Value::Record(_)) => serde_json::to_writer(out, &to_json(v, ctx)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::value::Fields;
    use crate::core::render::payload::json_object;

    fn src() -> Fields {
        Fields::with([
            ("quoted", Value::Str("say \"hi\" \\ C:\\path".into())),
            (
                "control",
                Value::Str("tab\tnl\ncr\r\u{0}\u{1f}\u{7f}".into()),
            ),
            ("unicode", Value::Str("Вася 🙂 \u{2028}\u{2029} é".into())),
            ("big", Value::Int(i64::MAX)),
            ("small", Value::Int(i64::MIN)),
            ("yes", Value::Bool(true)),
            ("nothing", Value::Null),
            (
                "at",
                Value::Time(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            ),
            (
                "agents",
                Value::List(vec![Value::Str("1\"01".into()), Value::Int(7), Value::Null]),
            ),
            (
                "target",
                Value::Record(vec![
                    ("ext", Value::Str("102".into())),
                    ("answered", Value::Bool(true)),
                ]),
            ),
        ])
    }

    /// The same fields, its strings also as text (as a call event has them).
    struct Texts(Fields);
    impl FieldSource for Texts {
        fn field(&self, name: &str) -> Option<Value> {
            self.0.field(name)
        }
        fn text(&self, name: &str) -> Option<&str> {
            match self.0 .0.get(name) {
                Some(Value::Str(s)) => Some(s),
                Some(Value::Null) => Some(""),
                _ => None,
            }
        }
    }

    fn params(lines: &[&str]) -> Vec<Param> {
        lines.iter().map(|l| Param::parse(l).unwrap()).collect()
    }

    /// The layout's bytes, and the general path's; the layout's from a source with text
    /// fields too, which must make no difference.
    fn both(p: &[Param]) -> (String, String) {
        let (src, ctx) = (src(), FormatContext::default());
        let refs: Vec<&Param> = p.iter().collect();
        let layout = Layout::of(&refs).expect("a fixed layout");
        assert!(layout.fits(refs.len()));
        let mut fast = Vec::new();
        layout.write(&mut fast, &refs, &src, &ctx).unwrap();
        let mut from_text = Vec::new();
        layout
            .write(&mut from_text, &refs, &Texts(src), &ctx)
            .unwrap();
        assert_eq!(from_text, fast, "the same from text fields");
        let general = serde_json::to_string(&json_object(p, &self::src(), &ctx)).unwrap();
        (String::from_utf8(fast).unwrap(), general)
    }

    #[test]
    fn a_fixed_layout_writes_the_general_paths_bytes() {
        let mut p = params(&[
            "id => ${call_id}",
            "quoted => ${quoted}",
            "pbx.kind => ${control}",
            "unicode => ${unicode}",
            "tags[] => ${duration}",
            "mixed => ${call_id}/${unicode}",
            "pbx.node => bench",
            "visit.utm.source => ${quoted}",
            "big => ${big}",
            "small => ${small}",
            "as_text => ${duration}|str",
            "as_int => ${ORDER_ID}|int",
            "yes => ${yes}",
            "as_bool => 1|bool",
            "nothing => ${nothing}",
            "tags[] => ${NOPE}",
            "missing => ${NOPE}",
            "default_str => ${NOPE}",
            "default_list => ${nothing}",
            "default_unused => ${duration}",
            "at => ${at}",
            "visit.at_unix => ${at}",
            "agents => ${agents}",
            "target => ${target}",
            "big => ${duration}",
            "tags[] => x",
            "key\"with\\escapes\u{1}é => x",
            "deep.a.b[] => ${agents}",
        ]);
        for q in &mut p {
            match q.path.last().unwrap().as_str() {
                "default_str" => q.default = Some(serde_json::json!("n/\"a\"")),
                "default_list" => q.default = Some(serde_json::json!([{"b": 1, "a": null}])),
                "default_unused" => q.default = Some(serde_json::json!(0)),
                "at_unix" => {
                    q.format = Some(FormatContext {
                        date_format: crate::core::render::template::DateFormat::Unix,
                        ..FormatContext::default()
                    })
                }
                _ => {}
            }
        }
        let (fast, general) = both(&p);
        assert_eq!(fast, general);
        // The cases are really there: nesting, appends, a repeated name (its last value in its
        // first place), escapes, defaults, times, a list and a record.
        for part in [
            r#""pbx":{"kind":"tab\tnl\ncr\r\u0000\u001f"#,
            r#","node":"bench"}"#,
            r#""tags":[20,null,"x"]"#,
            r#""big":20,"#,
            r#""visit":{"utm":{"source":"say \"hi\" \\ C:\\path"},"at_unix":1700000000}"#,
            r#""default_str":"n/\"a\"""#,
            r#""default_list":[{"b":1,"a":null}]"#,
            r#""default_unused":20"#,
            r#""at":"2023-11-14 22:13:20""#,
            r#""agents":["1\"01",7,null]"#,
            r#""target":{"ext":"102","answered":true}"#,
            r#""deep":{"a":{"b":[["1\"01",7,null]]}}"#,
        ] {
            assert!(general.contains(part), "{part} not in {general}");
        }
        assert_eq!(both(&[]), ("{}".to_string(), "{}".to_string()));
    }

    #[test]
    fn a_key_used_two_ways_has_no_fixed_layout() {
        for set in [
            &["x => 1", "x.y => 2"][..],
            &["x.y => 2", "x => 1"],
            &["agents => ${agents}", "agents[] => 103"],
            &["agents[] => 103", "agents => ${agents}"],
            &["t => ${target}", "t.answered => yes"],
            &["a[] => 1", "a.b => 2"],
        ] {
            let p = params(set);
            let refs: Vec<&Param> = p.iter().collect();
            assert_eq!(Layout::of(&refs), None, "{set:?}");
        }
    }
}
