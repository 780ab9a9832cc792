//! The front doors: HTTP(S) ([`http`], authenticated by [`auth`], served over TLS by [`tls`])
//! and AMQP ([`amqp`]). Both hand every message to
//! [`crate::intake::Intake`] and acknowledge upstream only on its `Ok`.

pub mod admin;
pub mod amqp;
pub mod auth;
pub mod http;
pub mod tls;
