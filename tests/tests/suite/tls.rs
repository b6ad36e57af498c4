//! TLS on both gRPC listeners and between processes, mutual when a CA is
//! configured: the suite works end to end over it, and a caller without
//! TLS, or without a certificate the CA signed, is refused.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use offers_tests::{Backend, TestSuite, each_backend};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a certificate it signed for this machine (as server and client).
fn pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).expect("dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    leaf.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write");
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
    }
}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
    Ok(answer.into_inner().status)
}

async fn the_suite_runs_over_mutual_tls(backend: Backend) {
    let pki = pki(&std::env::temp_dir().join(format!("offers-pki-{}", uuid::Uuid::new_v4())));
    let (ca, cert, key) = (pki.ca.clone(), pki.cert.clone(), pki.key.clone());
    let Some(suite) = TestSuite::spawn_with(backend, move |s| {
        (s.tls.ca_file, s.tls.cert_file, s.tls.key_file) = (Some(ca), Some(cert), Some(key));
    })
    .await
    else {
        return;
    };
    // The edge reaches every service over mutual TLS; so does the demo seeding.
    let token = suite.token("demo").await;
    let offers = suite.api.get("/api/v1/offers/", Some(&token)).await;
    assert_eq!(offers.status, 200, "{}", offers.body);
    assert!(suite.settings.upstream.auth.starts_with("https://"), "{}", suite.settings.upstream.auth);

    let url = format!("https://{}", suite.grpc_addr);
    let ca = Certificate::from_pem(std::fs::read(&pki.ca).expect("ca"));
    let identity = Identity::from_pem(std::fs::read(&pki.cert).expect("cert"), std::fs::read(&pki.key).expect("key"));
    let trusted = ClientTlsConfig::new().ca_certificate(ca.clone()).domain_name("localhost");
    let with_cert = Channel::from_shared(url.clone()).expect("url").tls_config(trusted.clone().identity(identity));
    assert_eq!(health(with_cert.expect("tls").connect_lazy()).await.expect("served"), 1, "SERVING");
    let without_cert = Channel::from_shared(url).expect("url").tls_config(trusted).expect("tls").connect_lazy();
    assert!(health(without_cert).await.is_err(), "a client without a certificate is refused");
    let plain = Channel::from_shared(format!("http://{}", suite.grpc_addr)).expect("url").connect_lazy();
    assert!(health(plain).await.is_err(), "a plaintext client is refused");
    suite.stop().await;
    std::fs::remove_dir_all(pki.ca.parent().expect("dir")).ok();
}

each_backend!(the_suite_runs_over_mutual_tls);
