# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""The installation's certificate authority and leaf certificates: the one copy of this
code (docs/architecture.md, "Who owns what"). The Ansible modules envoyage_ca and envoyage_cert use
it to issue the root CA and long-lived certificates; the runtime (as envoyage.module_utils)
issues and rotates short-lived leaves with the same functions.

Pure functions build keys and certificates and decide whether one must be made again
(ca_needs_regeneration, leaf_needs_regeneration); the file functions read them (refusing
private keys others can read) and write them atomically with their mode; ensure_ca and
ensure_leaf do what the modules envoyage_ca and envoyage_cert promise (check mode
included), so that the modules only map their options and results. Only the standard
library and `cryptography` are used.

Private to the collection (not public API): its name starts with an underscore, as in
community.crypto.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import os

from ._files import SecretFileError, read_secret_file, write_secret_file

KEY_TYPES = ("ec", "rsa", "ed25519")
RSA_SIZES = (2048, 3072, 4096)
USAGES = ("server", "client", "both")
CA_MAX_DAYS = 36500
LEAF_MAX_DAYS = 3650
KEY_MODE = 0o600
CERT_MODE = 0o644


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
            raise PkiError(
                "the Python package 'cryptography' is needed (Debian: apt install python3-cryptography)"
            ) from None
        self.x509, self.hashes, self.serialization = x509, hashes, serialization
        self.ec, self.ed25519, self.rsa = ec, ed25519, rsa
        self.ExtendedKeyUsageOID, self.NameOID = ExtendedKeyUsageOID, NameOID


_CRYPTO: list = []  # the one _Crypto, made when first needed


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


def days_problem(days, maximum):
    """A sentence naming the option if `days` is not a validity from 1 to `maximum` days."""
    if not 1 <= int(days) <= maximum:
        return "days: %d is not between 1 and %d" % (int(days), maximum)
    return None


# -- keys -------------------------------------------------------------------------------


def generate_key(key_type="ec", size=None):
    c = _crypto()
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
        raise PkiError(str(exc)) from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm: all "not a usable key"
        # from None: the parser's exception must not carry the file's content along
        raise PkiError("%s does not hold an unencrypted PEM private key of a supported type" % path) from None


def load_named(option, loader, path):
    """loader(path) (load_key or load_cert), its error prefixed with the option's name."""
    try:
        return loader(path)
    except PkiError as exc:
        raise PkiError("%s: %s" % (option, exc)) from None


def load_if_there(option, loader, path):
    """load_named(option, loader, path), or None if `path` does not exist."""
    return load_named(option, loader, path) if os.path.exists(path) else None


def new_key(path, key_type="ec", key_size=None):
    """A new private key of `key_type` (`key_size` for RSA only), written to `path` (0600)."""
    key = generate_key(key_type, key_size if key_type == "rsa" else None)
    write_file(path, key_pem(key), KEY_MODE)
    return key


def load_cert(path):
    x509 = _crypto().x509
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PkiError("cannot read the certificate %s: %s" % (path, exc.strerror or exc)) from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError("%s does not hold a PEM certificate" % path) from None


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
    problem = days_problem(days, CA_MAX_DAYS)
    if problem:
        raise PkiError(problem)
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
    problem = days_problem(days, LEAF_MAX_DAYS)
    if problem:
        raise PkiError(problem)
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


# -- what the modules decide and do -----------------------------------------------------


def ca_options_problem(common_name, days):
    """A sentence naming the option if envoyage_ca's options cannot make a CA, else None."""
    problem = days_problem(days, CA_MAX_DAYS)
    if problem:
        return problem
    try:
        check_common_name(common_name)
    except PkiError as exc:
        return "common_name: %s" % exc
    return None


def leaf_options_problem(common_name, sans, days, renew_before_days):
    """A sentence naming the option if envoyage_cert's options cannot make a certificate
    that lasts beyond its renewal window, else None."""
    problem = days_problem(days, LEAF_MAX_DAYS)
    if problem:
        return problem
    if not 0 <= renew_before_days < days:
        return "renew_before_days: %d must be at least 0 and less than days (%d)" % (renew_before_days, days)
    try:
        check_common_name(common_name)
    except PkiError as exc:
        return "common_name: %s" % exc
    try:
        parse_sans(sans)  # its errors name subject_alt_names
    except PkiError as exc:
        return str(exc)
    return None


def read_ca(key_path, cert_path):
    """The CA's (key, certificate) as they are on disk, None for a file that does not
    exist. A certificate without its key, or a key that does not match the certificate,
    is a PkiError naming the option: a CA is never replaced by accident."""
    if os.path.exists(cert_path) and not os.path.exists(key_path):
        raise PkiError(
            "key_path: %s does not exist but the CA certificate %s does; refusing to make a "
            "new CA over it (move the certificate away to start a new CA)" % (key_path, cert_path)
        )
    key = load_if_there("key_path", load_key, key_path)
    cert = load_if_there("cert_path", load_cert, cert_path)
    if key is not None and cert is not None and not key_matches_cert(key, cert):
        raise PkiError(
            "key_path: the CA key %s does not match the CA certificate %s; refusing to "
            "change either (move both away to start a new CA)" % (key_path, cert_path)
        )
    return key, cert


def ca_needs_regeneration(key, cert):
    """Why the CA's files must be written (a sentence), or None when the CA is complete.
    Only a missing file counts: an existing CA stays as it is, whatever its options say."""
    if key is None:
        return "it did not exist"
    if cert is None:
        return "its certificate did not exist"
    return None


def private_key_spec():
    """The argument spec of the options of a private key the module makes if missing."""
    return dict(
        key_type=dict(type="str", choices=list(KEY_TYPES), default="ec"),
        key_size=dict(type="int", choices=list(RSA_SIZES), default=3072),
    )


def ensure_ca(key_path, cert_path, common_name, key_type="ec", key_size=3072, days=3650, check_mode=False):
    """Make what is missing of the CA (read_ca refuses what must not be touched).

    Returns what envoyage_ca returns: `changed` (files were written, or would be in check
    mode), `created` (a new key and certificate), `certificate` (PEM text; "" in check
    mode when it would be made), `info` (describe() of it; only when it exists), `reason`
    (why the files were written, or None) and `diff` (which of the two files exist)."""
    key, cert = read_ca(key_path, cert_path)
    reason = ca_needs_regeneration(key, cert)
    result = {
        "changed": bool(reason),
        "reason": reason,
        "created": key is None,
        "certificate": "",
        "diff": {
            "before": {"key": key is not None, "certificate": cert is not None},
            "after": {"key": True, "certificate": True},
        },
    }
    if reason and check_mode:
        return result
    if reason:
        if key is None:
            key = new_key(key_path, key_type, key_size)
        cert = create_ca(key, common_name, days)
        write_file(cert_path, cert_pem(cert), CERT_MODE)
    result.update(certificate=cert_pem(cert).decode("ascii"), info=describe(cert))
    return result


def read_issuing_ca(ca_key_path, ca_cert_path, renew_before_days, now=None):
    """(CA key, CA certificate) that can issue a certificate lasting beyond the renewal
    window; PkiError naming the option otherwise (missing, mismatched, expiring)."""
    ca_key = load_named("ca_key_path", load_key, ca_key_path)
    ca_cert = load_named("ca_cert_path", load_cert, ca_cert_path)
    if not key_matches_cert(ca_key, ca_cert):
        raise PkiError("ca_key_path: the CA key %s does not match the CA certificate %s" % (ca_key_path, ca_cert_path))
    problem = ca_problem(ca_cert, renew_before_days, now)
    if problem:
        raise PkiError("ca_cert_path: %s" % problem)
    return ca_key, ca_cert


def leaf_needs_regeneration(key, cert, ca_cert, sans, renew_before_days, now=None):
    """Why the leaf certificate must be issued again (a sentence), or None: it or its key
    does not exist, it belongs to another key, or renewal_reason() says so."""
    if cert is None:
        return "it did not exist"
    if key is None:
        return "its key did not exist"
    if not key_matches_cert(key, cert):
        return "it does not belong to the key"
    return renewal_reason(cert, renew_before_days, sans, ca_cert, now)


def leaf_summary(cert):
    """What the diff shows of a leaf certificate ({} for none)."""
    if cert is None:
        return {}
    d = describe(cert)
    return {"subject_alt_names": d["subject_alt_names"], "not_after": d["not_after"], "issuer": d["issuer"]}


def ensure_leaf(
    ca_key_path,
    ca_cert_path,
    key_path,
    cert_path,
    common_name,
    subject_alt_names,
    usage="server",
    key_type="ec",
    key_size=3072,
    days=365,
    renew_before_days=30,
    check_mode=False,
    now=None,
):
    """Issue the leaf certificate (and make its key if missing) when
    leaf_needs_regeneration() gives a reason.

    Returns what envoyage_cert returns: `changed`, `reason` (or None), `certificate` (PEM
    text; "" in check mode when it would be issued), `info` (describe() of it; only when
    it exists after the run) and `diff` (leaf_summary() before and after; in check mode
    the names only after)."""
    ca_key, ca_cert = read_issuing_ca(ca_key_path, ca_cert_path, renew_before_days, now)
    key = load_if_there("key_path", load_key, key_path)
    cert = load_if_there("cert_path", load_cert, cert_path)
    reason = leaf_needs_regeneration(key, cert, ca_cert, subject_alt_names, renew_before_days, now)
    result = {"changed": bool(reason), "reason": reason, "certificate": "", "diff": {"before": leaf_summary(cert)}}
    if reason and check_mode:
        result["diff"]["after"] = {"subject_alt_names": [value for _kind, value in parse_sans(subject_alt_names)]}
        return result
    if reason:
        if key is None:
            key = new_key(key_path, key_type, key_size)
        cert = issue_leaf(ca_key, ca_cert, key, common_name, subject_alt_names, days, usage)
        write_file(cert_path, cert_pem(cert), CERT_MODE)
    result.update(certificate=cert_pem(cert).decode("ascii"), info=describe(cert))
    result["diff"]["after"] = leaf_summary(cert)
    return result
