//! The host's TLS client configuration, for the outbound HTTP of agents
//! with an `http` grant and for model providers.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;

/// The TLS client configuration: the Mozilla roots (`webpki-roots`), the
/// `ring` provider, safe protocol versions; built once.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("cannot set up TLS: {e}"))
        })
        .clone()
}
