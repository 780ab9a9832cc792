//! The HTTPS listener: rustls, client certificates verified against the configured CA during
//! the handshake (a certificate from another CA, or expired, ends the connection there), and
//! clients without a certificate admitted to authenticate with a bearer token instead. Each
//! connection carries its certificate's identities to the handlers as a [`Peer`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;
use wingspan_core::config::TlsSettings;

use crate::ingress::auth::Peer;

/// A client has this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// And this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Build the server's TLS config from PEM: the CA that issues client certificates, the
/// server's certificate chain and its private key. Errors never quote the key.
pub fn server_config(
    client_ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem) {
        roots
            .add(ca.map_err(|e| anyhow::anyhow!("client CA: {e}"))?)
            .map_err(|e| anyhow::anyhow!("client CA: {e}"))?;
    }
    if roots.is_empty() {
        anyhow::bail!("client CA: no certificate found");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow::anyhow!("client CA: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("server certificate: {e}"))?;
    if chain.is_empty() {
        anyhow::bail!("server certificate: no certificate found");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| anyhow::anyhow!("server key: no usable private key found"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("server certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Read the configured files (relative to `base`, the config's directory).
pub fn load(base: &Path, tls: &TlsSettings) -> anyhow::Result<Arc<ServerConfig>> {
    let read = |name: &str, file: &str| {
        let path = base.join(file);
        std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("tls.{name}: cannot read {}: {e}", path.display()))
    };
    server_config(
        &read("client_ca_file", &tls.client_ca_file)?,
        &read("cert_file", &tls.cert_file)?,
        &read("key_file", &tls.key_file)?,
    )
}

/// Accept TLS connections and serve `app` on each until `stop`; connections in progress then
/// finish their current request.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(config);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(acceptor.clone(), tcp, app.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections finish.
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!("TLS handshake timed out");
            return;
        }
    };
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(Peer::from_certificate)
        .unwrap_or_default();
    let service = TowerToHyperService::new(Extension(peer).layer(app));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
