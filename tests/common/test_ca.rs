//! A throwaway certificate authority made at test time (rcgen): server and client certificates as PEM files, and rustls server configurations for test servers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA whose certificate is at `ca_file`.
pub struct TestCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca_file: PathBuf,
    pub ca_pem: String,
}

/// A certificate signed by a [`TestCa`], with its key.
pub struct Leaf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`, its files in a fresh temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "asrgw-ca-{}-{name}-{}",
            std::process::id(),
            super::rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("asr-gateway test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca_file,
            ca_pem,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS).
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert_file: self.dir.join(format!("{name}.pem")),
            key_file: self.dir.join(format!("{name}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&leaf.cert_file, &leaf.cert_pem).unwrap();
        std::fs::write(&leaf.key_file, &leaf.key_pem).unwrap();
        leaf
    }

    /// The directory holding this CA's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A rustls server configuration presenting `leaf`; with `clients_of`, a client
    /// certificate signed by that CA is required.
    pub fn server_config(
        leaf: &Leaf,
        clients_of: Option<&TestCa>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients_of {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}
