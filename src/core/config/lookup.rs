//! `type = lookup`: a CRM endpoint the dialplan asks about a number (`WEBHOOK_LOOKUP`).

use std::time::Duration;

use super::request_spec::{RenderError, RequestSpec};
use super::values;
use super::KeyError;
use crate::core::model::request::HttpRequest;
use crate::core::model::value::{FieldSource, Value};

/// A contact-lookup endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub request: RequestSpec,
    /// The dialplan never waits longer than this.
    pub timeout: Duration,
    /// How long a found contact is reused.
    pub cache: Duration,
    /// Field returned when the dialplan names none.
    pub default_field: String,
}

struct Number<'a>(&'a str);

impl FieldSource for Number<'_> {
    fn field(&self, name: &str) -> Option<Value> {
        (name == "number").then(|| Value::non_empty(self.0))
    }
}

impl Lookup {
    pub fn new(request: RequestSpec, timeout: Duration) -> Lookup {
        Lookup {
            request,
            timeout,
            cache: Duration::from_secs(300),
            default_field: "contact_name".into(),
        }
    }

    /// Applies one key that is not a request key; [`KeyError::Unknown`] otherwise.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), KeyError> {
        let v = value.trim();
        match key {
            "timeout" => self.timeout = values::duration(v, Duration::from_millis(1))?,
            "cache" => self.cache = values::duration(v, Duration::from_secs(1))?,
            "default_field" => self.default_field = v.to_string(),
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }

    /// The request asking about `number` (`${number}` in the templates).
    pub fn render(&self, number: &str) -> Result<HttpRequest, RenderError> {
        self.request.render(&Number(number))
    }
}
