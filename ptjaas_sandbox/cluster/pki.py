"""The API server's TLS: a cluster CA and a serving certificate, made once per state directory.

kubectl (client-go) sends bearer tokens only over TLS, so an API server that authenticates
like a real one has to speak HTTPS. The CA's certificate goes into the kubeconfig
(``certificate-authority-data``); keys are 0600 in ``<state>/tls`` (state dir 0700).
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .auth import private_dir, write_private

DIRECTORY = "tls"   # under the state dir


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load(path):
    with open(path, "rb") as f:
        return f.read()


def ensure(state_dir, host):
    """(CA certificate PEM, serving cert file, serving key file) for ``host``; made if missing or
    if the serving certificate does not name ``host``."""
    pki = private_dir(os.path.join(state_dir, DIRECTORY))
    ca_crt, ca_key = os.path.join(pki, "ca.crt"), os.path.join(pki, "ca.key")
    crt, key = os.path.join(pki, "apiserver.crt"), os.path.join(pki, "apiserver.key")
    now = datetime.datetime.now(datetime.timezone.utc)
    if not (os.path.exists(ca_crt) and os.path.exists(ca_key)):
        k = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name("ptjaas-embedded-ca")).issuer_name(_name("ptjaas-embedded-ca"))
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(k, hashes.SHA256()))
        write_private(ca_key, _pem_key(k))
        write_private(ca_crt, cert.public_bytes(serialization.Encoding.PEM).decode())
        for stale in (crt, key):
            if os.path.exists(stale):
                os.unlink(stale)
    names = {"127.0.0.1", "localhost", host}
    if os.path.exists(crt) and os.path.exists(key):
        cert = x509.load_pem_x509_certificate(_load(crt))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        if names <= have and cert.not_valid_after_utc > now + datetime.timedelta(days=1):
            return _load(ca_crt), crt, key
    ca = x509.load_pem_x509_certificate(_load(ca_crt))
    ca_private = serialization.load_pem_private_key(_load(ca_key), None)
    k = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for n in sorted(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_private, hashes.SHA256()))
    write_private(key, _pem_key(k))
    write_private(crt, cert.public_bytes(serialization.Encoding.PEM).decode())
    return _load(ca_crt), crt, key
