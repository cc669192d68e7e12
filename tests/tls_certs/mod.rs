//! Certificates for the TLS tests, made fresh by each test run (no private
//! key is committed): a CA, a server certificate it signs for `localhost`
//! and 127.0.0.1, one it signs that expired, and a self-signed one that no
//! CA vouches for. `write_to` puts them in files for the C programs.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

pub struct Pair {
    /// The certificate chain, leaf first (PEM).
    pub chain: String,
    pub key: String,
    /// The leaf, DER.
    pub der: Vec<u8>,
}

pub struct Certs {
    pub ca: String,
    pub server: Pair,
    pub expired: Pair,
    pub self_signed: Pair,
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    CertificateParams::new(names).unwrap()
}

pub fn make() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "evloop test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let signed = |params: CertificateParams| {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pair {
            chain: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    };
    let server = signed(leaf_params(&["localhost", "127.0.0.1"]));
    let mut old = leaf_params(&["localhost", "127.0.0.1"]);
    old.not_before = rcgen::date_time_ymd(2001, 1, 1);
    old.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let expired = signed(old);
    let own_key = KeyPair::generate().unwrap();
    let own = leaf_params(&["localhost", "127.0.0.1"])
        .self_signed(&own_key)
        .unwrap();
    let self_signed = Pair {
        chain: own.pem(),
        key: own_key.serialize_pem(),
        der: own.der().to_vec(),
    };
    Certs {
        ca: ca_cert.pem(),
        server,
        expired,
        self_signed,
    }
}

/// Files in `dir`: ca.pem, server.pem, server.key, expired.pem,
/// expired.key, self.pem, self.key.
pub fn write_to(certs: &Certs, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("ca.pem", &certs.ca),
        ("server.pem", &certs.server.chain),
        ("server.key", &certs.server.key),
        ("expired.pem", &certs.expired.chain),
        ("expired.key", &certs.expired.key),
        ("self.pem", &certs.self_signed.chain),
        ("self.key", &certs.self_signed.key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.to_path_buf()
}

/// A valgrind suppression file for what memcheck gets wrong about ring:
/// it loses track of what ring's AES-GCM assembly (AES-NI, carry-less
/// multiplies) makes defined, and reports the records' bytes as
/// uninitialised (their origin: "a stack allocation" in rustls's
/// `AeadAlgorithm::encrypter`, the key schedule) when they reach a write.
/// The peer decrypts and authenticates every one of those records in the
/// tests, so the bytes are what they must be. Only writes of TLS records
/// are excused: those rustls makes itself, and the queued ones a TLS
/// stream flushes; and the comparison of a record's tag on the way in. valgrind matches a syscall parameter's name literally,
/// hence one entry per iovec.
pub fn ring_suppressions(dir: &Path) -> PathBuf {
    let mut text = String::new();
    let mut entry = |param: &str, frames: &str| {
        text.push_str(&format!(
            "{{\n   ring-{param}\n   Memcheck:Param\n   {param}\n   ...\n{frames}}}\n"
        ));
    };
    for i in 0..64 {
        entry(
            &format!("sendmsg(msg.msg_iov[{i}])"),
            "   fun:*write_tls*\n",
        );
        entry(&format!("writev(vector[{i}])"), "   fun:*write_tls*\n");
    }
    entry("sendto(buf)", "   fun:*flush*\n   ...\n   fun:*tls_*\n");
    entry("write(buf)", "   fun:*flush*\n   ...\n   fun:*tls_*\n");
    // The same on the way in: the tag computed over a record is compared
    // with the one it carries.
    text.push_str("{\n   ring-tag-check\n   Memcheck:Cond\n   fun:*verify_slices_are_equal*\n   ...\n   fun:*open_within*\n}\n");
    let path = dir.join("ring.supp");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}
