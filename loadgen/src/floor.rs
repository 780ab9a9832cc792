//! The raw HTTP floor: an HTTP/1 server (axum, keep-alive, the gateway's own HTTP stack) whose
//! only work per request is to publish the body to a quorum queue, persistent and mandatory,
//! and answer 202 once the broker confirmed it. No authentication, validation, routing,
//! encoding, receipt or audit record: what an upstream could reach through HTTP with no
//! gateway at all. It runs as a process of its own (this binary, `floor PORT QUEUE`), so
//! its CPU is measured from /proc as the gateway's is.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

#[derive(Clone)]
struct Floor {
    channel: Channel,
    queue: String,
}

async fn publish(State(f): State<Floor>, body: Bytes) -> (StatusCode, &'static str) {
    let sent = f
        .channel
        .basic_publish(
            "".into(),
            f.queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
    match sent {
        Ok(pending) => match pending.await {
            Ok(Confirmation::Ack(None)) => (StatusCode::ACCEPTED, "{\"status\":\"accepted\"}"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"refused\"}"),
        },
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"unavailable\"}",
        ),
    }
}

/// Serve until killed.
pub async fn serve(amqp_url: &str, port: u16, queue: String) -> anyhow::Result<()> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let app = Router::new()
        .route("/v1/messages", post(publish))
        .route("/readyz", get(|| async { "ready" }))
        .with_state(Floor { channel, queue });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
