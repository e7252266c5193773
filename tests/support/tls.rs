//! TLS for the rig: a throwaway PKI generated with rcgen, and `redis-server` nodes that also
//! listen with TLS.
//!
//! - [`Pki::generate`] writes, into its own temp dir (removed on drop): a test CA, an
//!   unrelated CA, server certificates for `localhost`, `127.0.0.1` and `::1` (valid, expired
//!   in 2021, and one valid only for `other.example`), and client certificates (one from the
//!   test CA, one from the unrelated CA). Keys are ECDSA P-256.
//! - [`TlsNode::start`] starts a [`RedisNode`] that keeps its plaintext port (the rig's
//!   readiness check and [`RedisNode::raw`] use it) and adds `--tls-port` with one of those
//!   certificates, `--tls-ca-cert-file` the test CA, and `--tls-auth-clients yes` (mutual TLS)
//!   or `no`. `redis-server` must be built with TLS (Debian's and Ubuntu's are).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::redis::{RedisNode, RedisOptions};
use super::{free_port, unique_temp_dir};

/// The server names every test server certificate (but `wrongname`) is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A test PKI on disk. See the module docs for what it holds.
pub struct Pki {
    dir: PathBuf,
}

/// Which server certificate a [`TlsNode`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// Signed by the test CA, valid now, for [`SERVER_NAMES`].
    Valid,
    /// Signed by the test CA, for [`SERVER_NAMES`], but valid only during 2020.
    Expired,
    /// Signed by the test CA, valid now, only for `other.example`.
    WrongName,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("rig: generate ca key: {e}"));
    let mut params = CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("rig: ca params: {e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("rig: self-sign ca: {e}"));
    (Issuer::new(params, key), cert.pem())
}

impl Pki {
    /// Generates every certificate and key into a fresh temp dir.
    pub fn generate() -> Pki {
        let pki = Pki {
            dir: unique_temp_dir("pki"),
        };
        let (issuer, ca_pem) = ca("resplock test ca");
        pki.write("ca.pem", &ca_pem);
        let (other, other_pem) = ca("some other ca");
        pki.write("other-ca.pem", &other_pem);
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        pki.leaf("server", &SERVER_NAMES, server.clone(), false, &issuer);
        pki.leaf("expired", &SERVER_NAMES, server.clone(), true, &issuer);
        pki.leaf("wrongname", &["other.example"], server, false, &issuer);
        pki.leaf(
            "client",
            &["resplock-client"],
            client.clone(),
            false,
            &issuer,
        );
        pki.leaf("rogue-client", &["resplock-client"], client, false, &other);
        pki
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("rig: write {}: {e}", path.display()));
    }

    fn leaf(
        &self,
        stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
        issuer: &Issuer<'_, KeyPair>,
    ) {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("rig: generate key: {e}"));
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params =
            CertificateParams::new(names).unwrap_or_else(|e| panic!("rig: leaf params: {e}"));
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, issuer)
            .unwrap_or_else(|e| panic!("rig: sign {stem}: {e}"));
        self.write(&format!("{stem}.pem"), &cert.pem());
        self.write(&format!("{stem}.key"), &key.serialize_pem());
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<name>`, e.g. `ca.pem`, `other-ca.pem`, `client.pem`, `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The test CA (PEM), for `Builder::tls_ca_file`.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed none of the server certificates.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The client certificate and key signed by the test CA.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client.key"))
    }

    /// A client certificate and key signed by the unrelated CA.
    pub fn rogue_client(&self) -> (PathBuf, PathBuf) {
        (self.path("rogue-client.pem"), self.path("rogue-client.key"))
    }

    fn server_files(&self, cert: ServerCert) -> (PathBuf, PathBuf) {
        let stem = match cert {
            ServerCert::Valid => "server",
            ServerCert::Expired => "expired",
            ServerCert::WrongName => "wrongname",
        };
        (
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How a [`TlsNode`] is set up.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// The certificate the server shows.
    pub cert: ServerCert,
    /// `--tls-auth-clients yes`: clients must show a certificate from the test CA.
    pub mutual: bool,
    /// Everything else (password, `maxclients`, ...).
    pub redis: RedisOptions,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            cert: ServerCert::Valid,
            mutual: false,
            redis: RedisOptions::default(),
        }
    }
}

/// A `redis-server` with a plaintext port (for the rig) and a TLS port (for the tests).
pub struct TlsNode {
    node: RedisNode,
    tls_port: u16,
}

impl TlsNode {
    /// Starts a node with `opts`, certificates from `pki`, on free ports. Retries with a fresh
    /// TLS port when the first was taken in between.
    pub fn start(pki: &Pki, opts: &TlsOptions) -> TlsNode {
        let (cert, key) = pki.server_files(opts.cert);
        let mut last = None;
        for _ in 0..5 {
            let tls_port = free_port();
            let redis = opts
                .redis
                .clone()
                .config("tls-port", &tls_port.to_string())
                .config("tls-cert-file", &cert.to_string_lossy())
                .config("tls-key-file", &key.to_string_lossy())
                .config("tls-ca-cert-file", &pki.ca().to_string_lossy())
                .config("tls-auth-clients", if opts.mutual { "yes" } else { "no" });
            match std::panic::catch_unwind(move || RedisNode::start_with(redis)) {
                Ok(node) => return TlsNode { node, tls_port },
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => std::panic::resume_unwind(e),
            None => unreachable!("the loop runs at least once"),
        }
    }

    /// `n` nodes with the same options.
    pub fn start_many(n: usize, pki: &Pki, opts: &TlsOptions) -> Vec<TlsNode> {
        (0..n).map(|_| TlsNode::start(pki, opts)).collect()
    }

    /// `rediss://[credentials@]127.0.0.1:<tls port>`.
    pub fn url(&self) -> String {
        self.url_for("127.0.0.1")
    }

    /// `rediss://[credentials@]<host>:<tls port>`, e.g. with `localhost`.
    pub fn url_for(&self, host: &str) -> String {
        format!("rediss://{}{host}:{}", self.node.userinfo(), self.tls_port)
    }

    /// `rediss://` to the node's *plaintext* port: a TLS client talking to a plaintext server.
    pub fn tls_url_to_plaintext_port(&self) -> String {
        format!(
            "rediss://{}127.0.0.1:{}",
            self.node.userinfo(),
            self.node.port()
        )
    }

    /// The TLS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The node underneath (plaintext port, `raw()`, pause, ...).
    pub fn node(&self) -> &RedisNode {
        &self.node
    }

    /// The node underneath, mutably.
    pub fn node_mut(&mut self) -> &mut RedisNode {
        &mut self.node
    }
}
