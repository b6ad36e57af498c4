//! Optional TLS for both gRPC listeners and for the calls between
//! processes: with a certificate and key the listeners speak TLS; with a CA
//! as well, they require a client certificate signed by it (mutual TLS) and
//! clients verify servers by it and present the same certificate. Upstream
//! URLs are then `https://`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use offers_kit::config::{Problems, Validate};
use offers_kit::grpc::Connector;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate (chain) of this process, for its listeners and, with
    /// a CA, as its client certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA that signs every process's certificate: clients verify
    /// servers by it, and listeners require client certificates signed by it.
    pub ca_file: Option<PathBuf>,
}

impl Validate for TlsSettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.cert_file.is_some() == self.key_file.is_some(), "key_file", "cert_file and key_file go together");
        p.check(
            self.ca_file.is_none() || self.cert_file.is_some(),
            "ca_file",
            "mutual TLS needs cert_file and key_file",
        );
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    fn identity(&self) -> anyhow::Result<Option<Identity>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some(Identity::from_pem(read(cert)?, read(key)?))),
            _ => Ok(None),
        }
    }

    fn ca(&self) -> anyhow::Result<Option<Certificate>> {
        self.ca_file.as_deref().map(read).transpose().map(|ca| ca.map(Certificate::from_pem))
    }

    /// What the gRPC listeners serve TLS with, if anything.
    pub fn server(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let Some(identity) = self.identity()? else { return Ok(None) };
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = self.ca()? {
            config = config.client_ca_root(ca);
        }
        Ok(Some(config))
    }

    /// How this process reaches other services.
    pub fn connector(&self, timeout: Duration) -> anyhow::Result<Connector> {
        let tls = match self.ca()? {
            Some(ca) => {
                let mut config = ClientTlsConfig::new().ca_certificate(ca);
                if let Some(identity) = self.identity()? {
                    config = config.identity(identity);
                }
                Some(config)
            }
            None => None,
        };
        Ok(Connector { timeout, tls })
    }

    /// The scheme of this deployment's gRPC URLs.
    pub fn scheme(&self) -> &'static str {
        if self.enabled() { "https" } else { "http" }
    }
}
