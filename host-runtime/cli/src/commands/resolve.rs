//! `tlsfallback resolve DOMAIN`, and the resolution `deliver` does without `--mx`: the host's
//! DNS (MX, DNSSEC, TLSA) and MTA-STS (TXT, policy, cache) for a recipient domain, and the floor
//! each MX host gets from them.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_mta::clock::{Clock as _, HostClock};
use tlsfallback_mta::resolve::DomainResolver;

use crate::flags::{DnsArgs, StoreArgs};

use serde_json::json;

use tlsfallback_mta::mta_sts::MxVerdict;
use tlsfallback_mta::resolve::{DomainResolution, MxList};

fn verdict_name(verdict: MxVerdict) -> &'static str {
    match verdict {
        MxVerdict::Enforce => "enforce",
        MxVerdict::Testing { mx_matches: true } => "testing",
        MxVerdict::Testing { mx_matches: false } => "testing-mx-not-in-policy",
        MxVerdict::NotAllowed => "not-allowed",
        MxVerdict::NoPolicy => "no-policy",
    }
}

/// The resolution as JSON (`tlsfallback resolve --json`).
#[must_use]
pub fn to_json(
    resolution: &DomainResolution,
    cache: Option<tlsfallback_mta::dns::CacheStats>,
) -> serde_json::Value {
    let sts = &resolution.mta_sts;
    let mx = match &resolution.mx {
        MxList::Hosts {
            security,
            implicit,
            hosts,
        } => json!({
            "kind": "hosts",
            "dnssec": security.name(),
            "implicit": implicit,
            "hosts": hosts.iter().map(|mx| {
                let context = mx.context(policy_core::DeliveryContext::default());
                json!({
                    "host": mx.host,
                    "preference": mx.preference,
                    "addresses": mx.addresses,
                    "address_dnssec": mx.address_security.map(tlsfallback_mta::dns::Security::name),
                    "tlsa": mx.dane,
                    "mta_sts": verdict_name(mx.mta_sts),
                    "unusable": mx.unusable,
                    "floor": {
                        "dane": context.dane.name(),
                        "mta_sts": mx.mta_sts_state.map_or("not-allowed", policy_core::MtaSts::name),
                        "tier": mx.floor().name(),
                    },
                })
            }).collect::<Vec<_>>(),
        }),
        MxList::NullMx => json!({"kind": "null-mx"}),
        MxList::NoSuchDomain => json!({"kind": "no-such-domain"}),
        MxList::Failed { error } => json!({"kind": "failed", "error": error}),
    };
    json!({
        "domain": resolution.domain,
        "mx": mx,
        "mta_sts": {
            "state": sts.state.name(),
            "policy_id": sts.policy_id,
            "source": sts.source.name(),
            "expires_at": sts.expires_at,
            "policy": sts.policy.as_ref().map(|p| p.policy_string()),
            "failure": sts.failure.as_ref().map(|f| json!({"result_type": f.result_type, "detail": f.detail})),
            "cache_problem": sts.cache_problem,
        },
        "dns_cache": cache,
    })
}

/// The resolution for a terminal.
#[must_use]
pub fn to_text(resolution: &DomainResolution) -> String {
    let mut lines = vec![format!("domain {}", resolution.domain)];
    let sts = &resolution.mta_sts;
    lines.push(format!(
        "mta-sts {} (source {}{}{})",
        sts.state.name(),
        sts.source.name(),
        sts.policy_id
            .as_ref()
            .map_or_else(String::new, |id| format!(", id {id}")),
        sts.expires_at
            .map_or_else(String::new, |t| format!(", expires at {t}")),
    ));
    if let Some(policy) = &sts.policy {
        for line in policy.policy_string() {
            lines.push(format!("  policy: {line}"));
        }
    }
    if let Some(failure) = &sts.failure {
        lines.push(format!(
            "  failure: {} ({})",
            failure.result_type, failure.detail
        ));
    }
    if let Some(problem) = &sts.cache_problem {
        lines.push(format!("  cache problem: {problem}"));
    }
    match &resolution.mx {
        MxList::Hosts {
            security,
            implicit,
            hosts,
        } => {
            lines.push(format!(
                "mx {} ({}{})",
                hosts.len(),
                security.name(),
                if *implicit {
                    ", implicit: the domain itself"
                } else {
                    ""
                }
            ));
            for mx in hosts {
                let addresses: Vec<String> = mx.addresses.iter().map(ToString::to_string).collect();
                lines.push(format!(
                    "  {} {} addresses [{}] ({})",
                    mx.preference,
                    mx.host,
                    addresses.join(", "),
                    mx.address_security
                        .map_or("lookup failed", tlsfallback_mta::dns::Security::name)
                ));
                lines.push(format!(
                    "    tlsa {}",
                    serde_json::to_string(&mx.dane).unwrap_or_default()
                ));
                lines.push(format!("    mta-sts {}", verdict_name(mx.mta_sts)));
                match &mx.unusable {
                    Some(why) => lines.push(format!("    not used: {why}")),
                    None => lines.push(format!(
                        "    floor {} ({})",
                        mx.floor().name(),
                        mx.summary(Some(sts))
                    )),
                }
            }
        }
        MxList::NullMx => lines.push("mx null (RFC 7505): the domain accepts no mail".to_owned()),
        MxList::NoSuchDomain => lines.push("mx: the domain does not exist".to_owned()),
        MxList::Failed { error } => lines.push(format!("mx lookup failed: {error}")),
    }
    lines.join("\n")
}

/// `tlsfallback resolve`.
#[derive(Debug, Args)]
pub(crate) struct ResolveCommand {
    /// The recipient domain.
    pub(crate) domain: String,
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The operator's policy file (for its [dns] table).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// The SMTP port whose TLSA records apply (`_PORT._tcp.<mx>`).
    #[arg(long, default_value_t = 25)]
    pub(crate) port: u16,
    /// JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

impl ResolveCommand {
    /// Resolves the domain and prints the resolution.
    ///
    /// # Errors
    ///
    /// The policy file, the resolver's set-up, or writing stdout.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let policy_file = match &self.policy {
            Some(path) => PolicyFile::load(path)?,
            None => PolicyFile::default(),
        };
        let settings = self.dns.resolve_settings(&policy_file, self.port);
        let resolver = DomainResolver::new(&settings, &self.store.path())?;
        let now = HostClock::from_env()?.now();
        let resolution = resolver.resolve(&self.domain, now);
        let mut stdout = io::stdout().lock();
        if self.json {
            serde_json::to_writer(
                &mut stdout,
                &to_json(&resolution, Some(resolver.dns().cache_stats())),
            )?;
            writeln!(stdout)?;
        } else {
            writeln!(stdout, "{}", to_text(&resolution))?;
        }
        Ok(())
    }
}
