//! Typed values that templates read, so a bare `${duration}` stays a JSON number.

use chrono::{DateTime, Utc};

/// One field's value as the payload engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent: `null` in JSON, empty in query strings and forms.
    Null,
    Str(String),
    Int(i64),
    Bool(bool),
    /// A point in time, formatted by each webhook's `date_format`.
    Time(DateTime<Utc>),
    /// A list (`agents`, `targets`): a JSON array; in text, the items joined by `,`.
    List(Vec<Value>),
    /// A small record (one of `targets`): a JSON object; in text, the values joined by `:`.
    Record(Vec<(&'static str, Value)>),
}

impl Value {
    /// A string value, or `Null` when the string is empty (missing data is `null`, not `""`).
    pub fn non_empty(s: &str) -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            Value::Str(s.to_string())
        }
    }
}

/// Anything templates can read fields from: a call event, a lookup request, a synthetic test event.
pub trait FieldSource {
    /// The value of `name`, or `None` when this source has no such field at all.
    fn field(&self, name: &str) -> Option<Value>;

    /// `name`'s text, borrowed, when the source holds it as text whose empty value means
    /// missing (its `field` is then [`Value::non_empty`] of it): rendering writes it without
    /// a copy. `None`: ask [`FieldSource::field`].
    fn text(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Fixed fields by name, for tests.
#[cfg(test)]
pub(crate) struct Fields(pub(crate) std::collections::HashMap<&'static str, Value>);

#[cfg(test)]
impl Fields {
    /// A call id, a duration and an order id, and `more`.
    pub(crate) fn with<const N: usize>(more: [(&'static str, Value); N]) -> Fields {
        let mut fields = std::collections::HashMap::from([
            ("call_id", Value::Str("17.5".into())),
            ("duration", Value::Int(20)),
            ("ORDER_ID", Value::Str("313".into())),
        ]);
        fields.extend(more);
        Fields(fields)
    }
}

#[cfg(test)]
impl FieldSource for Fields {
    fn field(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
}
