//! The agent's small PKI: one CA, a server certificate per agent (its host
//! names and addresses as SANs, serverAuth), and one client certificate for
//! the orchestrator (CN `drctl`, clientAuth). The agent trusts only clients
//! signed by the CA; the orchestrator trusts only agents signed by it.
//!
//! Re-issuing into a directory that holds a CA keeps that CA (so adding an
//! agent does not invalidate the others); every file is written to a
//! temporary name and renamed, keys with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::{AgentError, ClientTls};

/// The CN of the orchestrator's client certificate.
pub const CLIENT_CN: &str = "drctl";

/// Default validity of the certificates, in days (825, the longest a
/// browser-era server certificate may live; renewed with `drctl agent certs`).
pub const DEFAULT_DAYS: u32 = 825;

/// An agent to issue a server certificate for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentName {
    /// The agent's name (file names `agent-NAME.pem/.key`): letters,
    /// digits, `-`, `_`, `.`.
    pub name: String,
    /// The names and addresses the orchestrator reaches it by (an IP
    /// string becomes an IP SAN).
    pub hosts: Vec<String>,
}

impl AgentName {
    /// `NAME=HOST[,HOST…]`, as `drctl agent certs --agent` takes it.
    pub fn parse(spec: &str) -> Result<AgentName, AgentError> {
        let bad = |reason: &str| AgentError::BadAgentSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, hosts) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=HOST[,HOST…], e.g. db1=10.0.1.5,db1.internal"))?;
        let hosts: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if hosts.is_empty() {
            return Err(bad(
                "no host after '=': name at least one host name or IP address",
            ));
        }
        Ok(AgentName {
            name: name.trim().to_string(),
            hosts,
        })
    }
}

/// The files of one agent's server certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFiles {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where [`issue_pki`] wrote everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate (`ca.pem`): every agent's `--ca`, and what the
    /// orchestrator trusts agents by.
    pub ca: PathBuf,
    /// The CA's key (`ca.key`): keep it off the agents' hosts.
    pub ca_key: PathBuf,
    /// The CA was already there and was kept.
    pub ca_reused: bool,
    pub agents: Vec<AgentFiles>,
    /// The orchestrator's client certificate (`drctl.pem/.key`) with the CA.
    pub client: ClientTls,
}

/// Issues (or re-issues) the PKI into `dir`: the CA (kept when `dir`
/// already has one), a server certificate per agent and the
/// orchestrator's client certificate, each valid for `days` from now.
pub fn issue_pki(dir: &Path, agents: &[AgentName], days: u32) -> Result<Pki, AgentError> {
    if days == 0 {
        return Err(AgentError::Pki {
            dir: dir.display().to_string(),
            reason: "a validity of 0 days: give --days 1 or more".into(),
        });
    }
    for a in agents {
        check_name(&a.name)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
        what: "creating the PKI directory",
        path: dir.display().to_string(),
        source,
    })?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let pki_error = |reason: String| AgentError::Pki {
        dir: dir.display().to_string(),
        reason,
    };
    let now = OffsetDateTime::now_utc();
    // An hour back: a host whose clock is a little behind still accepts a
    // certificate issued just now.
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(days));

    let (issuer, ca_reused) = if ca_path.exists() {
        let cert = read_text(&ca_path)?;
        let key = read_text(&ca_key_path)?;
        let key = KeyPair::from_pem(&key).map_err(|e| {
            pki_error(format!(
                "{} is not a usable private key ({e}): restore it, or issue into an empty directory (which makes a new CA every agent must get)",
                ca_key_path.display()
            ))
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| {
            pki_error(format!(
                "{} is not a usable CA certificate ({e}): restore it, or issue into an empty directory",
                ca_path.display()
            ))
        })?;
        (issuer, true)
    } else {
        let key = KeyPair::generate().map_err(|e| pki_error(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("drctl agents CA {}", now.unix_timestamp()));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        // The CA outlives the certificates it signs several times over, so
        // renewing them never forces a new CA onto every host.
        params.not_after = now + Duration::days(i64::from(days).saturating_mul(4));
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_error(e.to_string()))?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
        (Issuer::new(params, key), false)
    };

    let mut files = Vec::new();
    for a in agents {
        let mut params = CertificateParams::new(a.hosts.clone()).map_err(|e| {
            pki_error(format!(
                "agent {:?}: a host is neither a DNS name nor an IP address ({e})",
                a.name
            ))
        })?;
        params.distinguished_name = dn(&format!("drctl agent {}", a.name));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = leaf(params, &issuer, not_before, not_after)
            .map_err(|e| pki_error(format!("agent {:?}: {e}", a.name)))?;
        let f = AgentFiles {
            name: a.name.clone(),
            cert: dir.join(format!("agent-{}.pem", a.name)),
            key: dir.join(format!("agent-{}.key", a.name)),
        };
        write_file(&f.key, key.as_bytes(), 0o600)?;
        write_file(&f.cert, cert.as_bytes(), 0o644)?;
        files.push(f);
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = dn(CLIENT_CN);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, key) =
        leaf(params, &issuer, not_before, not_after).map_err(|e| pki_error(e.to_string()))?;
    let client = ClientTls {
        ca: ca_path.clone(),
        cert: dir.join("drctl.pem"),
        key: dir.join("drctl.key"),
    };
    write_file(&client.key, key.as_bytes(), 0o600)?;
    write_file(&client.cert, cert.as_bytes(), 0o644)?;

    Ok(Pki {
        dir: dir.to_path_buf(),
        ca: ca_path,
        ca_key: ca_key_path,
        ca_reused,
        agents: files,
        client,
    })
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "drctl");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A certificate and its new key, signed by `issuer`: (cert PEM, key PEM).
fn leaf(
    mut params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn check_name(name: &str) -> Result<(), AgentError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::BadAgentSpec {
            spec: name.to_string(),
            reason: "an agent's name may hold only letters, digits, '-', '_' and '.' (it names its files)".into(),
        })
    }
}

fn read_text(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|source| AgentError::Io {
        what: "reading",
        path: path.display().to_string(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path` with `mode`, then
/// renames it over `path`: a crash leaves the old file or the new one.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        what: "writing",
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reissue_keeps_the_ca_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let agents = [AgentName::parse("db1=127.0.0.1,localhost").unwrap()];
        let first = issue_pki(dir.path(), &agents, 30).unwrap();
        assert!(!first.ca_reused);
        let ca = std::fs::read(&first.ca).unwrap();
        let more = [AgentName::parse("db2=10.0.0.2").unwrap()];
        let second = issue_pki(dir.path(), &more, 30).unwrap();
        assert!(second.ca_reused);
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca);
        assert!(first.agents[0].cert.exists(), "db1's files stay");
        for key in [&first.ca_key, &second.agents[0].key, &second.client.key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn agent_specs_and_names_are_checked() {
        assert!(AgentName::parse("db1").is_err());
        assert!(AgentName::parse("db1=").is_err());
        let dir = tempfile::tempdir().unwrap();
        let bad = AgentName {
            name: "../x".into(),
            hosts: vec!["h".into()],
        };
        assert!(issue_pki(dir.path(), &[bad], 1).is_err());
    }
}
