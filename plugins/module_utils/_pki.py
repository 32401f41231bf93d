# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""The installation's certificate authority and leaf certificates: the one copy of this
code (DESIGN.md, "Who owns what"). The Ansible modules envoyage_ca and envoyage_cert use
it to issue the root CA and long-lived certificates; the runtime (as envoyage.module_utils)
issues and rotates short-lived leaves with the same functions.

Pure functions build keys and certificates and decide whether one must be renewed; the
file functions read them (refusing private keys others can read) and write them
atomically with their mode. Only the standard library and `cryptography` are used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress

from ._files import SecretFileError, read_secret_file, write_secret_file

KEY_TYPES = ("ec", "rsa", "ed25519")
RSA_SIZES = (2048, 3072, 4096)
USAGES = ("server", "client", "both")


class PkiError(Exception):
    """A problem with a key or certificate, in a sentence for the user (never key material)."""


class _Crypto:
    """The parts of `cryptography` used here, imported when first needed."""

    def __init__(self):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
            from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        except ImportError:
            raise PkiError("the Python package 'cryptography' is needed (Debian: apt install python3-cryptography)")
        self.x509, self.hashes, self.serialization = x509, hashes, serialization
        self.ec, self.ed25519, self.rsa = ec, ed25519, rsa
        self.ExtendedKeyUsageOID, self.NameOID = ExtendedKeyUsageOID, NameOID


_CRYPTO = []


def _crypto():
    if not _CRYPTO:
        _CRYPTO.append(_Crypto())
    return _CRYPTO[0]


def _now():
    return datetime.datetime.now(datetime.UTC)


def not_after(cert):
    """The end of validity, timezone-aware (cryptography before 42 has only naive UTC)."""
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=datetime.UTC)


def not_before(cert):
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=datetime.UTC)


def check_common_name(common_name):
    if not common_name or len(common_name) > 64:
        raise PkiError("common_name must be 1 to 64 characters, got %r" % (common_name,))
    return common_name


# -- keys -------------------------------------------------------------------------------


def generate_key(key_type="ec", size=None):
    c = _crypto()
    x509 = c.x509
    hashes = c.hashes
    serialization = c.serialization
    ec = c.ec
    ed25519 = c.ed25519
    rsa = c.rsa
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        size = size or 3072
        if size not in RSA_SIZES:
            raise PkiError("key_size %r: RSA keys must be one of %s bits" % (size, ", ".join(map(str, RSA_SIZES))))
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise PkiError("key_type %r: must be one of %s" % (key_type, ", ".join(KEY_TYPES)))


def key_type_of(key):
    c = _crypto()
    ec = c.ec
    ed25519 = c.ed25519
    rsa = c.rsa
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    return "unknown"


def key_pem(key):
    c = _crypto()
    serialization = c.serialization
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key):
    c = _crypto()
    serialization = c.serialization
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_key(path):
    """The private key in `path`; refuses one others can read, and never echoes content."""
    serialization = _crypto().serialization
    try:
        data = read_secret_file(path, "the private key file")
    except SecretFileError as exc:
        raise PkiError(str(exc))
    try:
        return serialization.load_pem_private_key(data, password=None)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm: all "not a usable key"
        raise PkiError("%s does not hold an unencrypted PEM private key of a supported type" % path)


def load_named(option, loader, path):
    """loader(path) (load_key or load_cert), its error prefixed with the option's name."""
    try:
        return loader(path)
    except PkiError as exc:
        raise PkiError("%s: %s" % (option, exc))


def new_key(path, key_type="ec", key_size=None):
    """A new private key of `key_type` (`key_size` for RSA only), written to `path` (0600)."""
    key = generate_key(key_type, key_size if key_type == "rsa" else None)
    write_file(path, key_pem(key), 0o600)
    return key


def load_cert(path):
    x509 = _crypto().x509
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PkiError("cannot read the certificate %s: %s" % (path, exc.strerror or exc))
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError("%s does not hold a PEM certificate" % path)


def cert_pem(cert):
    c = _crypto()
    serialization = c.serialization
    return cert.public_bytes(serialization.Encoding.PEM)


# -- certificates -----------------------------------------------------------------------


def _sign_hash(key):
    c = _crypto()
    hashes = c.hashes
    ed25519 = c.ed25519
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name):
    c = _crypto()
    x509 = c.x509
    NameOID = c.NameOID
    check_common_name(common_name)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(key, common_name, days=3650):
    """A self-signed root CA (path length 0: it signs leaves only)."""
    x509 = _crypto().x509
    if not 1 <= int(days) <= 36500:
        raise PkiError("days %r: must be between 1 and 36500" % (days,))
    now = _now()
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=int(days)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, _sign_hash(key))


def parse_sans(sans):
    """DNS names, IP addresses and spiffe:// URIs -> (kind, value) pairs, normalized."""
    out = []
    for item in sans or []:
        text = str(item).strip()
        if not text:
            continue
        if text.startswith("spiffe://"):
            out.append(("uri", text))
            continue
        try:
            out.append(("ip", str(ipaddress.ip_address(text))))
            continue
        except ValueError:
            pass
        name = text.lower().rstrip(".")
        labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
        if not all(label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) for label in labels):
            raise PkiError("subject_alt_names: %r is not a DNS name, an IP address or a spiffe:// URI" % item)
        out.append(("dns", name))
    return sorted(set(out))


def issue_leaf(ca_key, ca_cert, key, common_name, sans, days=365, usage="server"):
    """A leaf certificate for `key`, signed by the CA, with its SANs and extended key usage."""
    c = _crypto()
    x509 = c.x509
    ExtendedKeyUsageOID = c.ExtendedKeyUsageOID
    if usage not in USAGES:
        raise PkiError("usage %r: must be one of %s" % (usage, ", ".join(USAGES)))
    if not 1 <= int(days) <= 3650:
        raise PkiError("days %r: must be between 1 and 3650" % (days,))
    entries = []
    for kind, value in parse_sans(sans):
        if kind == "dns":
            entries.append(x509.DNSName(value))
        elif kind == "ip":
            entries.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            entries.append(x509.UniformResourceIdentifier(value))
    if not entries:
        raise PkiError("subject_alt_names: a leaf certificate needs at least one name")
    now = _now()
    ca_end = not_after(ca_cert)
    end = min(now + datetime.timedelta(days=int(days)), ca_end)  # never outlive the CA
    eku = {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    }[usage]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(entries), critical=False)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    return builder.sign(ca_key, _sign_hash(ca_key))


def cert_sans(cert):
    x509 = _crypto().x509
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [("dns", n.lower()) for n in ext.get_values_for_type(x509.DNSName)]
    out += [("ip", str(a)) for a in ext.get_values_for_type(x509.IPAddress)]
    out += [("uri", u) for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    return sorted(set(out))


def key_matches_cert(key, cert):
    return public_pem(key) == cert.public_key().public_bytes(
        _crypto().serialization.Encoding.PEM, _crypto().serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signed_by(cert, ca_cert):
    """True if `cert` was issued and signed by `ca_cert`."""
    if cert.issuer != ca_cert.subject:
        return False
    try:
        if hasattr(cert, "verify_directly_issued_by"):
            cert.verify_directly_issued_by(ca_cert)
            return True
        # cryptography before 40: check the signature with the CA's public key
        c = _crypto()
        public = ca_cert.public_key()
        if isinstance(public, c.ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, c.ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(public, c.rsa.RSAPublicKey):
            from cryptography.hazmat.primitives.asymmetric import padding

            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            public.verify(cert.signature, cert.tbs_certificate_bytes)
        return True
    except Exception:  # noqa: BLE001 - cryptography raises several kinds here
        return False


def renewal_reason(cert, renew_before_days, sans=None, ca_cert=None, now=None):
    """Why `cert` must be issued again (a sentence), or None: inside the renewal window,
    expired, other names than asked for, or no longer signed by the CA."""
    now = now or _now()
    end = not_after(cert)
    left = end - now
    if left.total_seconds() <= 0:
        return "it expired on %s" % end.strftime("%Y-%m-%d")
    if left <= datetime.timedelta(days=renew_before_days):
        return "it expires on %s, within the renewal window of %d days" % (end.strftime("%Y-%m-%d"), renew_before_days)
    if sans is not None and cert_sans(cert) != parse_sans(sans):
        return "its names changed"
    if ca_cert is not None and not signed_by(cert, ca_cert):
        return "it is not signed by this CA"
    return None


def ca_problem(ca_cert, renew_before_days, now=None):
    """A sentence if the CA cannot issue a certificate that lasts beyond the renewal
    window (expired, or expiring within it), else None."""
    now = now or _now()
    end = not_after(ca_cert)
    if end <= now:
        return "the CA expired on %s; renew the CA first" % end.strftime("%Y-%m-%d")
    if end - now <= datetime.timedelta(days=renew_before_days):
        return (
            "the CA expires on %s, within the renewal window of %d days, so every run would issue again; "
            "renew the CA first" % (end.strftime("%Y-%m-%d"), renew_before_days)
        )
    return None


def describe(cert):
    """What modules return about a certificate (no key material)."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": "%x" % cert.serial_number,
        "not_before": not_before(cert).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject_alt_names": [value for _kind, value in cert_sans(cert)],
        "fingerprint_sha256": cert.fingerprint(_crypto().hashes.SHA256()).hex(),
    }


def write_file(path, data, mode, owner=None, group=None):
    """Atomically, with its mode (and owner/group ids) from the first byte on."""
    if isinstance(data, bytes):
        data = data.decode("ascii")
    write_secret_file(path, data, mode=mode, owner=owner, group=group)
