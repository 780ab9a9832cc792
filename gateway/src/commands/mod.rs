//! The CLI's commands, one module per command group (`wingspan <group> …`).

pub mod adapter;
