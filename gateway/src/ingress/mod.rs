//! The front doors: HTTP ([`http`]) and AMQP ([`amqp`]). Both hand every message to
//! [`crate::intake::Intake`] and acknowledge upstream only on its `Ok`.

pub mod admin;
pub mod amqp;
pub mod http;
