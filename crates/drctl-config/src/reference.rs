//! The configuration reference, `docs/config.md`, rendered from the key
//! descriptors each section declares beside its checks (`crate::schema`).
//!
//! It owns the order of the document and its introduction, nothing else:
//! what a key is, its type, default and doc come from the section that
//! checks it. `tests/reference.rs` fails when the committed file differs
//! from [`config_reference`], and rewrites it when run with
//! `DRCTL_BLESS=1`.

use crate::schema::{render, Section};
use crate::section::{
    agents, alerts, api, audit, backup, coordination, dns_providers, failover, health, monitor,
    object_stores, postgres, regions, root, scratch, service_dns, services, store, tiers,
};

/// Every table, in the order a config file usually reads.
pub(crate) const SECTIONS: &[&Section] = &[
    &root::ROOT,
    &store::STORE,
    &api::API,
    &api::TOKENS,
    &monitor::MONITOR,
    &regions::REGIONS,
    &tiers::TIERS,
    &tiers::HOT,
    &tiers::WARM,
    &tiers::COLD,
    &object_stores::OBJECT_STORES,
    &failover::FAILOVER,
    &dns_providers::DNS_PROVIDERS,
    &alerts::WEBHOOKS,
    &services::SERVICES,
    &health::HEALTH,
    &postgres::NODE,
    &backup::BACKUP,
    &service_dns::SERVICE_DNS,
    &failover::SERVICE_FAILOVER,
    &scratch::SCRATCH,
    &agents::AGENTS,
    &coordination::COORDINATION,
    &audit::AUDIT,
];

const INTRODUCTION: &str = "\
# Configuration reference

<!-- Generated from crates/drctl-config/src/section/*.rs; do not edit.
     Regenerate with: DRCTL_BLESS=1 cargo test -p drctl-config --test reference -->

drctl reads one TOML file (`drctl --config PATH`, checked by `drctl config validate`).
Every table and key it accepts is listed below, with its type and its default
when the file leaves it out. `config/shop.example.toml` is a complete example.

- **Durations** are strings with a unit: `\"500ms\"`, `\"5s\"`, `\"30m\"`, `\"24h\"`, `\"30d\"`;
  never zero, at most 100 years.
- **Paths** that are relative resolve against the config file's directory.
- **Secrets** (DSN passwords, tokens, keys, webhook URLs) are named by
  `*_env` (an environment variable) or `*_file` (a file), read only when
  needed, and never printed.
- **Names** of regions, services, stores, providers, tokens and webhooks use
  only `a-z`, `0-9` and `-`.
- Tables may be written as `[table]` or `table = { … }`, arrays of tables as
  `[[array]]` or `array = [{ … }]`.

";

/// The Markdown of `docs/config.md`.
pub fn config_reference() -> String {
    let mut out = INTRODUCTION.to_string();
    for section in SECTIONS {
        render(section, &mut out);
    }
    // One trailing newline, as editors and `git diff` expect.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::section::{dns_providers, object_stores, postgres};

    /// The groups of keys the checks use to tell kinds apart are made of
    /// documented keys (a typo there would refuse a documented key).
    #[test]
    fn key_groups_are_documented_keys() {
        let groups: [(&Section, &[&str]); 6] = [
            (
                &object_stores::OBJECT_STORES,
                object_stores::LOCAL_STORE_KEYS,
            ),
            (&object_stores::OBJECT_STORES, object_stores::S3_STORE_KEYS),
            (&dns_providers::DNS_PROVIDERS, dns_providers::RFC2136_KEYS),
            (&dns_providers::DNS_PROVIDERS, dns_providers::ROUTE53_KEYS),
            (
                &dns_providers::DNS_PROVIDERS,
                dns_providers::TSIG_SECRET_KEYS,
            ),
            (&postgres::NODE, postgres::DSN_KEYS),
        ];
        for (section, group) in groups {
            for key in group {
                assert!(
                    section.names().contains(key),
                    "{key} is not a key of {}",
                    section.header
                );
            }
        }
        for key in backup::KEY_SOURCE_KEYS {
            assert!(backup::BACKUP.names().contains(key), "{key}");
        }
    }

    #[test]
    fn every_table_documents_each_key_once_with_a_doc() {
        for section in SECTIONS {
            let names = section.names();
            for (i, key) in section.keys.iter().enumerate() {
                assert!(
                    !names[..i].contains(&key.name),
                    "{} twice in {}",
                    key.name,
                    section.header
                );
                assert!(
                    !key.doc.is_empty(),
                    "{}.{} has no doc",
                    section.header,
                    key.name
                );
            }
            assert!(!section.doc.is_empty(), "{} has no doc", section.header);
        }
    }

    /// Defaults written as text are ones the checks accept.
    #[test]
    fn textual_defaults_parse() {
        use crate::model::{RecordType, TsigAlgorithm};
        assert!(TsigAlgorithm::all()
            .iter()
            .any(|a| a.as_str() == dns_providers::DEFAULT_TSIG_ALGORITHM));
        assert!(service_dns::DEFAULT_RECORD_TYPE
            .parse::<RecordType>()
            .is_ok());
        assert!(api::DEFAULT_LISTEN.parse::<std::net::SocketAddr>().is_ok());
    }
}
