//! The call model's data: the call record and its events, the values templates read, an HTTP request, and the synthetic call `webhook test` sends.

pub mod call;
pub mod request;
pub mod synthetic;
pub mod value;
