//! PKI for one test control plane: a CA, the API server's serving cert, an
//! admin client cert (`system:masters`) and the service-account signing key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the files written by [`Pki::write`], and the CA that signed
/// them (kept in memory only) for certificates issued later.
#[derive(Clone)]
pub struct Pki {
    /// CA certificate (PEM); also the client CA of the API server.
    pub ca_cert: PathBuf,
    /// API server serving certificate and key.
    pub server_cert: PathBuf,
    /// Key of `server_cert`.
    pub server_key: PathBuf,
    /// Admin client certificate (CN=kubernetes-admin, O=system:masters).
    pub admin_cert: PathBuf,
    /// Key of `admin_cert`.
    pub admin_key: PathBuf,
    /// Service-account token signing key (private).
    pub sa_key: PathBuf,
    /// Public half of `sa_key`, for token verification.
    pub sa_pub: PathBuf,
    dir: PathBuf,
    issuer: Arc<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What a certificate issued by [`Pki::issue`] is for.
pub enum Usage {
    /// A client certificate: `CN=<cn>`, `O=<org>` for each group.
    Client { cn: String, groups: Vec<String> },
    /// A serving certificate for these DNS names and IPs.
    Server { cn: String, sans: Vec<String> },
}

impl Pki {
    /// Generates every key and certificate into `dir`.
    pub fn write(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes-executor-test-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "10.0.0.1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "kubernetes-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
            dir: dir.to_path_buf(),
            issuer: Arc::new(issuer),
        };
        let write = |p: &PathBuf, s: String| {
            std::fs::write(p, s).with_context(|| format!("write {}", p.display()))
        };
        write(&pki.ca_cert, ca_cert.pem())?;
        write(&pki.server_cert, server_cert.pem())?;
        write(&pki.server_key, server_key.serialize_pem())?;
        write(&pki.admin_cert, admin_cert.pem())?;
        write(&pki.admin_key, admin_key.serialize_pem())?;
        write(&pki.sa_key, sa_key.serialize_pem())?;
        write(&pki.sa_pub, sa_key.public_key_pem())?;
        Ok(pki)
    }

    /// Issues a certificate signed by this CA into `<name>.crt`/`<name>.key`
    /// next to the others; returns their paths.
    pub fn issue(&self, name: &str, usage: Usage) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let params = match usage {
            Usage::Client { cn, groups } => {
                let mut p = CertificateParams::new(Vec::<String>::new())?;
                p.distinguished_name.push(DnType::CommonName, cn);
                for g in groups {
                    p.distinguished_name.push(DnType::OrganizationName, g);
                }
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p
            }
            Usage::Server { cn, sans } => {
                let mut p = CertificateParams::new(sans)?;
                p.distinguished_name.push(DnType::CommonName, cn);
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                p
            }
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        let (crt, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).with_context(|| format!("write {}", crt.display()))?;
        std::fs::write(&k, key.serialize_pem())
            .with_context(|| format!("write {}", k.display()))?;
        Ok((crt, k))
    }
}
