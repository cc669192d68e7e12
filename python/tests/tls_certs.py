"""Certificates for the TLS tests, made once per process by the openssl
command (no private key is committed): a CA, and a server certificate it
signs for "localhost" and 127.0.0.1 (EC P-256). Not a test module."""

import atexit
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

_DIR = None


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def cert_dir():
    """The directory of ca.pem, server.pem and server.key (SkipTest without openssl)."""
    global _DIR
    if _DIR is not None:
        return _DIR
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("openssl is needed to make the test certificates (apt-get install openssl)")
    directory = tempfile.mkdtemp(prefix="evloop-tls-certs-")
    atexit.register(shutil.rmtree, directory, True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=evloop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=directory)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=directory)
    Path(directory, "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "30", "-extfile", "ext", cwd=directory)
    _DIR = directory
    return directory


def path(name):
    return os.path.join(cert_dir(), name)
