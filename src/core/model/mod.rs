//! The call model's data: the call record and its events, the values templates read, an HTTP
//! request, what one delivery attempt came to, and the synthetic call `webhook test` sends.

pub mod attempt;
pub mod call;
pub mod request;
pub mod synthetic;
pub mod value;
