//! The TLS crypto provider: ring, for every TLS user (kube's client, the Pure1 client).
//!
//! reqwest (`rustls-no-provider`) and kube (which installs a provider by itself only with
//! aws-lc-rs, left out of this build so nothing needs a C toolchain) both build their TLS
//! configuration from rustls' process-wide provider, which must therefore be installed before
//! either makes a client.
pub fn install_crypto_provider() {
    // An error means a provider is installed already (another caller was first): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
