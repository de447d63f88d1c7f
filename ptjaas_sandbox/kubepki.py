"""Certificates and kubeconfigs for a real control plane on loopback (``realkube.py``): a CA, the
serving and client certificates of each component (``cryptography``), the service-account key
pair, and kubeconfig files that use them (or a token)."""

import datetime
import ipaddress
import os
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _cert(subject_cn, key, issuer=None, organization=None, ca=False, ips=(), dns=(), server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    attrs = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []) + \
            [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]
    name = x509.Name(attrs)
    issuer_cert, issuer_key = issuer or (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = [x509.ExtendedKeyUsageOID.SERVER_AUTH] if server else [x509.ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if ips or dns:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA and the certificates of one control plane, written as PEM files under ``directory``."""

    def __init__(self, directory, service_account_keys=True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        self.ca = _cert("ptjaas-test-ca", ca_key, ca=True)
        self._ca = (self.ca, ca_key)
        self.ca_file = self._write("ca", self.ca, ca_key)
        if not service_account_keys:
            return
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key_file = self.dir / "sa.key"
        self.sa_key_file.write_bytes(_pem_key(sa_key))
        self.sa_pub_file = self.dir / "sa.pub"
        self.sa_pub_file.write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write(self, name, cert, key):
        (self.dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.dir / f"{name}.key").write_bytes(_pem_key(key))
        os.chmod(self.dir / f"{name}.key", 0o600)
        return self.dir / f"{name}.crt"

    def issue(self, name, cn, organization=None, server=False):
        """(cert file, key file) for a client (or, with ``server``, a loopback serving) certificate."""
        key = _key()
        cert = _cert(cn, key, issuer=self._ca, organization=organization, server=server,
                     ips=("127.0.0.1",) if server else (),
                     dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc") if server else ())
        crt = self._write(name, cert, key)
        return crt, self.dir / f"{name}.key"


def write_kubeconfig(path, server, ca_file, cert_file=None, key_file=None, token=None, namespace="default",
                     name="ptjaas-real"):
    user = {"token": token} if token else {"client-certificate": str(cert_file), "client-key": str(key_file)}
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
              "users": [{"name": name, "user": user}],
              "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
              "current-context": name}
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    os.chmod(path, 0o600)
    return str(path)
