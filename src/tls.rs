//! TLS for `rediss://` nodes (feature `tls`): the client configuration built once per manager,
//! a blocking TLS stream whose every call makes at most one socket call, and the mapping from
//! rustls' errors to the [`TlsError`] that says which check failed.
//!
//! Contract:
//! - The configuration ([`Connector`]) is built by [`crate::Builder::build`], before any I/O on
//!   the network, and shared by every `rediss://` node of the manager. Certificates are
//!   verified by default: against the bundled Mozilla root store (webpki-roots), or only
//!   against the CA file when [`crate::Builder::tls_ca_file`] is given, for the URL's host name
//!   (sent as SNI) or IP address. A file that cannot be used is an
//!   [`Error::InvalidTlsFile`] naming the file, never quoting it. Session resumption is off:
//!   a lock client reconnects rarely, and storing tickets would allocate on the read path.
//! - The handshake runs inside the connect deadline; each socket call gets the time left.
//! - After the handshake, [`TlsStream::read`] and [`TlsStream::write`] make at most one socket
//!   call each, bounded by the socket's timeout, so [`crate::conn`]'s deadline rules hold
//!   unchanged. A read that times out in the middle of a record keeps the partial record in
//!   rustls' buffer: the connection stays usable. A write that times out leaves ciphertext
//!   queued: the command is half sent and the caller drops the connection, as for plain TCP.
//! - No rustls type appears in the public API: failures are [`TlsError`] values.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    InvalidMessage, RootCertStore, SignatureScheme,
};

use crate::conn::time_left;
use crate::error::{ConfigRule, Error, NodeError, Phase, TlsError, TlsFileRule};

/// Largest CA, certificate or key file read (a PEM bundle of every public root is ~250 KiB).
const MAX_FILE: u64 = 16 << 20;

/// The TLS settings a [`crate::Builder`] collects.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsSettings {
    /// Trust only the CAs in this PEM file instead of the bundled roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and private key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Test-only: accept any server certificate.
    pub accept_any_certificate: bool,
}

impl TlsSettings {
    /// True when anything differs from the defaults.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.accept_any_certificate
    }
}

/// One manager's TLS client configuration, shared by its `rediss://` nodes.
#[derive(Clone)]
pub(crate) struct Connector(Arc<ClientConfig>);

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    /// Builds the configuration: reads and checks the PEM files (no network I/O).
    pub fn new(settings: &TlsSettings) -> Result<Self, Error> {
        if settings.accept_any_certificate && settings.ca_file.is_some() {
            return Err(Error::config(ConfigRule::TlsVerification));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let setup = |_| Error::config(ConfigRule::TlsSetup);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(setup)?;
        let builder = if settings.accept_any_certificate {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &settings.ca_file {
                Some(path) => {
                    for cert in read_certificates(path)? {
                        roots
                            .add(cert)
                            .map_err(|_| file_error(path, TlsFileRule::BadCertificate))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &settings.client_cert {
            Some((cert_path, key_path)) => {
                let chain = read_certificates(cert_path)?;
                let key = read_private_key(key_path)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|_| file_error(key_path, TlsFileRule::KeyMismatch))?
            }
            None => builder.with_no_client_auth(),
        };
        config.resumption = Resumption::disabled();
        Ok(Self(Arc::new(config)))
    }

    /// The configuration of a manager without TLS settings: verification against the bundled
    /// roots. Built once per process.
    pub fn default_shared() -> Option<Self> {
        static DEFAULT: OnceLock<Option<Connector>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| Self::new(&TlsSettings::default()).ok())
            .clone()
    }
}

/// True when `host` (a canonical host from a URL) can be checked against a certificate: a DNS
/// name (sent as SNI) or an IP address (checked against the IP addresses in the certificate;
/// no SNI, as RFC 6066 requires).
pub(crate) fn valid_server_name(host: &str) -> bool {
    ServerName::try_from(host).is_ok()
}

fn file_error(path: &Path, reason: TlsFileRule) -> Error {
    Error::InvalidTlsFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// The file's bytes, at most [`MAX_FILE`]; the error names the file and the reason only.
fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let fail = |e: io::Error| {
        file_error(
            path,
            match e.kind() {
                io::ErrorKind::NotFound => TlsFileRule::NotFound,
                io::ErrorKind::PermissionDenied => TlsFileRule::PermissionDenied,
                _ => TlsFileRule::Unreadable,
            },
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(fail)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(file_error(path, TlsFileRule::TooLarge));
    }
    Ok(bytes)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| file_error(path, TlsFileRule::BadPem))?;
    if certs.is_empty() {
        return Err(file_error(path, TlsFileRule::NoCertificate));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let mut bytes = read_file(path)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        file_error(
            path,
            match e {
                pem::Error::NoItemsFound => TlsFileRule::NoPrivateKey,
                _ => TlsFileRule::BadPem,
            },
        )
    });
    // Best effort: do not leave the key's PEM text in freed memory.
    bytes.fill(0);
    key
}

/// The test-only verifier behind
/// [`crate::Builder::dangerously_accept_any_tls_certificate_for_tests`]: it accepts any chain
/// for any name and any date, and still checks the handshake signatures (so the server holds
/// the key of the certificate it showed, whoever that is).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which check a rustls error reports.
pub(crate) fn classify(error: &rustls::Error) -> TlsError {
    use rustls::Error as E;
    #[allow(deprecated)]
    match error {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsError::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::HostNameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::NotYetValid
            }
            CertificateError::Revoked => TlsError::Revoked,
            _ => TlsError::BadCertificate,
        },
        // The first bytes back were not a TLS record header: a plaintext server answered.
        E::InvalidMessage(InvalidMessage::InvalidContentType) => TlsError::NotTls,
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => TlsError::ClientCertRequired,
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied => TlsError::ClientCertRejected,
            AlertDescription::HandshakeFailure
            | AlertDescription::ProtocolVersion
            | AlertDescription::InsufficientSecurity => TlsError::HandshakeFailure,
            _ => TlsError::Protocol,
        },
        E::PeerIncompatible(_) => TlsError::HandshakeFailure,
        E::NoCertificatesPresented => TlsError::BadCertificate,
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::DecryptError
        | E::PeerMisbehaved(_)
        | E::PeerSentOversizedRecord => TlsError::Protocol,
        _ => TlsError::Other,
    }
}

/// The TLS failure an I/O error from [`TlsStream`] carries, if any.
pub(crate) fn from_io(error: &io::Error) -> Option<TlsError> {
    let inner = error.get_ref()?;
    inner.downcast_ref::<rustls::Error>().map(classify)
}

/// A TLS client session over a blocking TCP socket.
pub(crate) struct TlsStream {
    conn: ClientConnection,
    sock: TcpStream,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer", &self.sock.peer_addr().ok())
            .field("version", &self.conn.protocol_version())
            .finish_non_exhaustive()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn tls_io(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsStream {
    /// Runs the whole handshake on a connected socket before `deadline` (the connect's). The
    /// certificate is checked for `host`: a DNS name is also sent as SNI.
    pub fn connect(
        sock: TcpStream,
        connector: &Connector,
        host: &str,
        deadline: Instant,
    ) -> Result<TlsStream, NodeError> {
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| NodeError::Tls(TlsError::Other))?;
        let conn = ClientConnection::new(Arc::clone(&connector.0), name)
            .map_err(|e| NodeError::Tls(classify(&e)))?;
        let mut stream = TlsStream { conn, sock };
        stream.handshake(deadline)?;
        Ok(stream)
    }

    fn handshake(&mut self, deadline: Instant) -> Result<(), NodeError> {
        let io_error = |e: &io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => NodeError::Closed,
            kind => NodeError::Io {
                phase: Phase::TlsHandshake,
                kind,
            },
        };
        loop {
            while self.conn.wants_write() {
                let budget = time_left(deadline, Phase::TlsHandshake)?;
                self.sock
                    .set_write_timeout(Some(budget))
                    .map_err(|e| io_error(&e))?;
                match self.conn.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                    Err(e) => return Err(io_error(&e)),
                }
            }
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            let budget = time_left(deadline, Phase::TlsHandshake)?;
            self.sock
                .set_read_timeout(Some(budget))
                .map_err(|e| io_error(&e))?;
            let eof = match self.conn.read_tls(&mut self.sock) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(e) => return Err(io_error(&e)),
            };
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert for the server: send it without waiting, a courtesy.
                if self.sock.set_nonblocking(true).is_ok() {
                    let _ = self.conn.write_tls(&mut self.sock);
                    let _ = self.sock.set_nonblocking(false);
                }
                return Err(NodeError::Tls(classify(&e)));
            }
            if eof {
                return Err(NodeError::Closed);
            }
        }
    }

    /// The TCP socket under the session (for timeouts and non-blocking mode).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Reads decrypted bytes, making at most one socket call: when that call brought no whole
    /// record, returns `WouldBlock` as a socket timeout would, and the caller checks its
    /// deadline. `Ok(0)`: the server closed with `close_notify`; `UnexpectedEof`: it closed
    /// without. A TLS failure is an `InvalidData` error carrying the rustls error
    /// (see [`from_io`]).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.conn.reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        self.conn.read_tls(&mut self.sock)?;
        self.conn.process_new_packets().map_err(tls_io)?;
        self.conn.reader().read(buf)
    }

    /// Encrypts `buf` into the session's queue, then makes one socket write of the queue.
    /// Returns how many bytes of `buf` were taken: they are on the wire only once
    /// [`TlsStream::pending`] is false ([`TlsStream::write_pending`] sends the rest). Call it
    /// only while nothing is pending, so bytes go out in order.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        debug_assert!(!self.conn.wants_write(), "write with ciphertext pending");
        let taken = self.conn.writer().write(buf)?;
        match self.conn.write_tls(&mut self.sock) {
            Ok(_) => Ok(taken),
            // Taken but not (all) sent: `pending` keeps the caller writing until its deadline.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(taken),
            Err(e) => Err(e),
        }
    }

    /// True while encrypted bytes wait to be written.
    pub fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// One socket write of the queued ciphertext; the bytes the socket took.
    pub fn write_pending(&mut self) -> io::Result<usize> {
        self.conn.write_tls(&mut self.sock)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    use super::{Connector, TlsSettings};
    use crate::conn::{Conn, ReplyBounds};
    use crate::error::{NodeError, Phase};
    use crate::resp::{Limits, Reply};
    use crate::url::NodeAddr;

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    fn server_config() -> Arc<ServerConfig> {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| panic!("rcgen: {e}"));
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth().with_single_cert(
                    vec![CertificateDer::from(generated.cert.der().to_vec())],
                    PrivateKeyDer::Pkcs8(key),
                )
            })
            .unwrap_or_else(|e| panic!("server config: {e}"));
        Arc::new(config)
    }

    /// Reads one whole command (a PING) through the session.
    fn read_command(tls: &mut ServerConnection, sock: &mut TcpStream) {
        let mut got = Vec::new();
        while got.len() < PING.len() {
            tls.complete_io(sock)
                .unwrap_or_else(|e| panic!("server io: {e}"));
            let mut buf = [0u8; 64];
            if let Ok(n) = tls.reader().read(&mut buf) {
                got.extend_from_slice(buf.get(..n).unwrap_or_default());
            }
        }
        assert_eq!(got, PING);
    }

    /// A TLS server that answers the connect-time PING at once, then answers the next PING
    /// with one record sent in two halves, `pause` apart.
    fn split_record_server(pause: Duration) -> (u16, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .port();
        let config = server_config();
        let handle = thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
            let mut tls =
                ServerConnection::new(config).unwrap_or_else(|e| panic!("server conn: {e}"));
            while tls.is_handshaking() {
                tls.complete_io(&mut sock)
                    .unwrap_or_else(|e| panic!("server handshake: {e}"));
            }
            read_command(&mut tls, &mut sock);
            let _ = tls.writer().write_all(b"+PONG\r\n");
            tls.complete_io(&mut sock)
                .unwrap_or_else(|e| panic!("server write: {e}"));
            read_command(&mut tls, &mut sock);
            let _ = tls.writer().write_all(b"+OK\r\n");
            let mut record = Vec::new();
            while tls.wants_write() {
                let _ = tls.write_tls(&mut record);
            }
            let (first, rest) = record.split_at(record.len() / 2);
            let _ = sock.write_all(first);
            let _ = sock.flush();
            thread::sleep(pause);
            let _ = sock.write_all(rest);
            // Keep the socket open until the client is done.
            let _ = sock.read(&mut [0u8; 1]);
        });
        (port, handle)
    }

    #[test]
    fn a_read_timeout_in_the_middle_of_a_record_keeps_the_connection() {
        let (port, server) = split_record_server(Duration::from_millis(300));
        let settings = TlsSettings {
            accept_any_certificate: true,
            ..TlsSettings::default()
        };
        let connector = Connector::new(&settings).unwrap_or_else(|e| panic!("{e}"));
        let mut addr = NodeAddr::parse(&format!("rediss://127.0.0.1:{port}"))
            .unwrap_or_else(|e| panic!("{e}"));
        addr.set_tls(&connector);
        let bounds = ReplyBounds::new(Limits::LOCK_CLIENT);
        let resolved = [std::net::SocketAddr::from(([127, 0, 0, 1], port))];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conn = Conn::connect(&addr, &resolved, deadline, bounds)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        conn.send(PING, Instant::now() + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("send: {e}"));
        // Half a record arrives, then nothing until the deadline.
        let early = conn.recv(Instant::now() + Duration::from_millis(100), |_| ());
        assert_eq!(early, Err(NodeError::Timeout(Phase::Read)));
        assert!(conn.lagging());
        // The partial record stayed in the session: the rest completes it.
        let reply = conn.recv(Instant::now() + Duration::from_secs(5), |reply| {
            matches!(reply, Reply::Simple(b"OK"))
        });
        assert_eq!(reply, Ok(true));
        assert!(!conn.lagging());
        drop(conn);
        server
            .join()
            .unwrap_or_else(|_| panic!("server thread panicked"));
    }
}
