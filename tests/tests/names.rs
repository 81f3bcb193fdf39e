//! One source for names: `wit/policy.wit` holds every enum's, flag's and variant's cases and the
//! interface version. `kits/vectors/contract.json` is generated from it (its `wit` section, see
//! `vectors.rs`), the kits read that file, and these tests fail, naming the file and the case,
//! when a copy that cannot read it (the Node kit's TypeScript types, the Python kit's enum
//! classes, policy-core's `name()`s, a version spelled out in code or docs) differs from the WIT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the WIT says, in declaration order.
pub(crate) struct Wit {
    /// `tlsfallback:policy@0.2.0`
    pub(crate) package: String,
    /// `tlsfallback:policy/engine@0.2.0`
    pub(crate) interface: String,
    /// `tlsfallback:policy/fleet@0.2.0`
    pub(crate) fleet_interface: String,
    /// `0.2.0`
    pub(crate) version: String,
    /// Each enum of the `engine` interface and its cases.
    pub(crate) enums: Vec<(String, Vec<String>)>,
    /// Each flags type and its flags.
    pub(crate) flags: Vec<(String, Vec<String>)>,
    /// Each variant and its cases, with whether the case carries a payload.
    pub(crate) variants: Vec<(String, Vec<(String, bool)>)>,
}

impl Wit {
    /// The cases of the enum, flags or variant `name`.
    fn cases(&self, name: &str) -> Vec<String> {
        let find = |list: &[(String, Vec<String>)]| {
            list.iter()
                .find(|(n, _)| n == name)
                .map(|(_, cases)| cases.clone())
        };
        find(&self.enums)
            .or_else(|| find(&self.flags))
            .or_else(|| {
                self.variants
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, cases)| cases.iter().map(|(c, _)| c.clone()).collect())
            })
            .unwrap_or_else(|| panic!("wit/policy.wit has no enum, flags or variant {name}"))
    }

    /// The `contract.json` section that lists every case.
    pub(crate) fn contract_section(&self) -> Value {
        let object = |list: &[(String, Vec<String>)]| -> serde_json::Map<String, Value> {
            list.iter()
                .map(|(name, cases)| (name.clone(), json!(cases)))
                .collect()
        };
        let variants: serde_json::Map<String, Value> = self
            .variants
            .iter()
            .map(|(name, cases)| {
                let cases: Vec<Value> = cases
                    .iter()
                    .map(|(case, payload)| json!({"name": case, "payload": payload}))
                    .collect();
                (name.clone(), json!(cases))
            })
            .collect();
        json!({
            "package": self.package,
            "enums": object(&self.enums),
            "flags": object(&self.flags),
            "variants": variants,
        })
    }
}

/// Parses `wit/policy.wit` with wit-parser (the parser wasmtime and wit-bindgen use).
pub(crate) fn wit() -> Wit {
    use wit_parser::TypeDefKind;
    let mut resolve = wit_parser::Resolve::new();
    let package = resolve
        .push_file(repo().join("wit/policy.wit"))
        .expect("wit/policy.wit parses");
    let name = &resolve.packages[package].name;
    let version = name
        .version
        .as_ref()
        .expect("the WIT package has a version")
        .to_string();
    let interface_id = resolve.packages[package].interfaces["engine"];
    let interface = &resolve.interfaces[interface_id];
    let mut wit = Wit {
        package: name.to_string(),
        interface: format!("{}:{}/engine@{version}", name.namespace, name.name),
        fleet_interface: {
            assert!(
                resolve.packages[package].interfaces.contains_key("fleet"),
                "wit/policy.wit has a fleet interface"
            );
            format!("{}:{}/fleet@{version}", name.namespace, name.name)
        },
        version,
        enums: Vec::new(),
        flags: Vec::new(),
        variants: Vec::new(),
    };
    for (type_name, id) in &interface.types {
        match &resolve.types[*id].kind {
            TypeDefKind::Enum(e) => wit.enums.push((
                type_name.clone(),
                e.cases.iter().map(|c| c.name.clone()).collect(),
            )),
            TypeDefKind::Flags(f) => wit.flags.push((
                type_name.clone(),
                f.flags.iter().map(|f| f.name.clone()).collect(),
            )),
            TypeDefKind::Variant(v) => wit.variants.push((
                type_name.clone(),
                v.cases
                    .iter()
                    .map(|c| (c.name.clone(), c.ty.is_some()))
                    .collect(),
            )),
            _ => {}
        }
    }
    wit
}

/// The wire name of each TLS version (`tlsfallback decide`, OpenSSL, Node), by WIT case: the one
/// place a kit learns that `tls10` is `TLSv1`.
pub(crate) fn tls_version_names() -> serde_json::Map<String, Value> {
    use policy_core::TlsVersion;
    let cases = wit().cases("tls-version");
    let versions = [
        TlsVersion::Tls1_0,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ];
    assert_eq!(
        cases.len(),
        versions.len(),
        "wit/policy.wit's tls-version has {cases:?}; policy-core's TlsVersion has {} versions",
        versions.len()
    );
    cases
        .into_iter()
        .zip(versions)
        .map(|(case, version)| (case, json!(version.name())))
        .collect()
}

/// Compares a copy's case list with the WIT's; the message names the file, the type and the
/// cases that differ.
fn same_cases(file: &str, copy: &str, copied: &[String], wit_name: &str, wit_cases: &[String]) {
    if copied == wit_cases {
        return;
    }
    let missing: Vec<_> = wit_cases.iter().filter(|c| !copied.contains(c)).collect();
    let extra: Vec<_> = copied.iter().filter(|c| !wit_cases.contains(c)).collect();
    panic!(
        "{file}: {copy} differs from wit/policy.wit's {wit_name}: missing {missing:?}, not in the \
         WIT {extra:?} (the copy lists {copied:?}, the WIT {wit_cases:?}, in this order)"
    );
}

/// The string literals of `export type NAME = ...;` in a TypeScript declaration file.
fn ts_union(source: &str, name: &str) -> Option<Vec<String>> {
    let start = source.find(&format!("export type {name} ="))?;
    let body = &source[start..];
    let body = &body[..body.find(';')?];
    Some(
        body.split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn the_node_kit_types_list_every_wit_case_and_no_other() {
    let file = "kits/node/src/index.d.ts";
    let source = std::fs::read_to_string(repo().join(file)).unwrap();
    let wit = wit();
    for (ts, wit_name) in [
        ("Tier", "tier"),
        ("Profile", "profile"),
        ("Dane", "dane"),
        ("MtaSts", "mta-sts"),
        ("TlsAlert", "tls-alert"),
        ("CertificateError", "certificate-error"),
        ("OutcomeKind", "outcome"),
        ("CipherPolicy", "cipher-policy"),
        ("Verification", "verification"),
        ("ActionKind", "action"),
        ("Reason", "reason"),
        ("TlsRptResult", "tls-rpt-results"),
        ("HistoryErrorKind", "history-error"),
    ] {
        let copied =
            ts_union(&source, ts).unwrap_or_else(|| panic!("{file}: no `export type {ts} = ...;`"));
        same_cases(
            file,
            &format!("type {ts}"),
            &copied,
            wit_name,
            &wit.cases(wit_name),
        );
    }
    let plain: Vec<String> = wit
        .variants
        .iter()
        .find(|(n, _)| n == "outcome")
        .unwrap()
        .1
        .iter()
        .filter(|(_, payload)| !payload)
        .map(|(c, _)| c.clone())
        .collect();
    let copied = ts_union(&source, "PlainOutcomeKind")
        .unwrap_or_else(|| panic!("{file}: no `export type PlainOutcomeKind = ...;`"));
    same_cases(
        file,
        "type PlainOutcomeKind",
        &copied,
        "outcome (cases without a payload)",
        &plain,
    );
    let wire: Vec<String> = tls_version_names()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let copied = ts_union(&source, "TlsVersion").unwrap();
    same_cases(
        file,
        "type TlsVersion",
        &copied,
        "tls-version (as wire names)",
        &wire,
    );
}

/// The values of each `class NAME(_WireEnum):` in the Python kit's `_types.py`.
fn python_enums(source: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("class ") {
            current = rest
                .strip_suffix("(_WireEnum):")
                .map(|name| name.trim().to_owned());
            if let Some(name) = &current {
                out.insert(name.clone(), Vec::new());
            }
            continue;
        }
        if !line.starts_with("    ") && !line.trim().is_empty() {
            current = None;
        }
        let Some(name) = &current else { continue };
        let trimmed = line.trim();
        // `    MEMBER = "value"`
        if let Some((member, value)) = trimmed.split_once(" = \"")
            && member
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            out.get_mut(name)
                .unwrap()
                .push(value.trim_end_matches('"').to_owned());
        }
    }
    out
}

#[test]
fn the_python_kit_enums_list_every_wit_case_and_no_other() {
    let file = "kits/python/src/tlsfallback/_types.py";
    let source = std::fs::read_to_string(repo().join(file)).unwrap();
    let enums = python_enums(&source);
    let wit = wit();
    for (class, wit_name) in [
        ("Tier", "tier"),
        ("Profile", "profile"),
        ("Dane", "dane"),
        ("MtaSts", "mta-sts"),
        ("TlsAlert", "tls-alert"),
        ("CertificateError", "certificate-error"),
        ("CipherPolicy", "cipher-policy"),
        ("Verification", "verification"),
        ("Reason", "reason"),
        ("TlsRptResult", "tls-rpt-results"),
        ("ActionKind", "action"),
        ("OutcomeKind", "outcome"),
        ("HistoryErrorKind", "history-error"),
    ] {
        let copied = enums
            .get(class)
            .unwrap_or_else(|| panic!("{file}: no `class {class}(_WireEnum):`"));
        same_cases(
            file,
            &format!("class {class}"),
            copied,
            wit_name,
            &wit.cases(wit_name),
        );
    }
    let wire: Vec<String> = tls_version_names()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    same_cases(
        file,
        "class TlsVersion",
        &enums["TlsVersion"],
        "tls-version (as wire names)",
        &wire,
    );
}

#[test]
fn policy_core_names_are_the_wit_cases() {
    use policy_core::{
        CertificateError, Dane, HistoryError, MtaSts, Profile, Reason, Tier, TlsAlert, TlsRptResult,
    };
    let file = "policy-core/src";
    let wit = wit();
    let names = |list: Vec<&'static str>| list.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut tiers = Tier::STRONGEST_FIRST;
    tiers.sort();
    let copies = [
        ("Tier::name", names(tiers.map(Tier::name).to_vec()), "tier"),
        (
            "Profile::name",
            names(Profile::ALL.map(Profile::name).to_vec()),
            "profile",
        ),
        (
            "Dane::name",
            names(Dane::ALL.map(Dane::name).to_vec()),
            "dane",
        ),
        (
            "MtaSts::name",
            names(MtaSts::ALL.map(MtaSts::name).to_vec()),
            "mta-sts",
        ),
        (
            "TlsAlert::name",
            names(TlsAlert::ALL.map(TlsAlert::name).to_vec()),
            "tls-alert",
        ),
        (
            "CertificateError::name",
            names(CertificateError::ALL.map(CertificateError::name).to_vec()),
            "certificate-error",
        ),
        (
            "Reason::name",
            names(Reason::ALL.iter().map(|r| r.name()).collect()),
            "reason",
        ),
        (
            "TlsRptResult::name",
            names(TlsRptResult::ALL.map(TlsRptResult::name).to_vec()),
            "tls-rpt-results",
        ),
        (
            "HistoryError::name",
            names(
                [
                    HistoryError::Empty,
                    HistoryError::TooLong(0),
                    HistoryError::UnsupportedVersion(0),
                    HistoryError::Truncated,
                    HistoryError::Malformed,
                    HistoryError::TrailingBytes(0),
                ]
                .into_iter()
                .map(HistoryError::name)
                .collect(),
            ),
            "history-error",
        ),
    ];
    for (copy, copied, wit_name) in copies {
        same_cases(file, copy, &copied, wit_name, &wit.cases(wit_name));
    }
}

#[test]
fn the_host_speaks_the_wit_interface_version() {
    assert_eq!(
        tlsfallback_engine::component::EXPORTED_INTERFACE,
        wit().interface,
        "host-runtime's EXPORTED_INTERFACE is not wit/policy.wit's interface"
    );
}

/// Files that name another version on purpose.
const OTHER_VERSION_ON_PURPOSE: &[&str] = &[
    // A component exporting an older interface, refused by the host's version check.
    "host-runtime/cli/tests/plugin.rs",
];

#[test]
fn every_spelled_out_interface_version_is_the_wits() {
    let wit = wit();
    let (major, minor) = {
        let mut parts = wit.version.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let files = std::process::Command::new("git")
        .current_dir(repo())
        .args(["ls-files", "-z"])
        .output()
        .expect("git ls-files");
    assert!(files.status.success(), "git ls-files failed");
    let mut wrong = Vec::new();
    for file in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let file = String::from_utf8_lossy(file).into_owned();
        if OTHER_VERSION_ON_PURPOSE.contains(&file.as_str()) || file.ends_with("package-lock.json")
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            // JavaScript regular expressions write `engine\/…@0\.2\.0`.
            let line = line.replace("\\.", ".").replace("\\/", "/");
            for (at, _) in line.match_indices("tlsfallback:policy") {
                let rest = &line[at + "tlsfallback:policy".len()..];
                let rest = rest.strip_prefix("/engine").unwrap_or(rest);
                let Some(version) = rest.strip_prefix('@') else {
                    continue;
                };
                let version: String = version
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect();
                // `engine@{version}`: a format string that takes the version from elsewhere.
                if version.is_empty() {
                    continue;
                }
                let mut parts = version.split('.');
                // A patch that is not a number (`0.2.x`, a regular expression's `0.2.\d+`) stands
                // for any patch of the WIT's major.minor, which is what a host accepts.
                let same = parts.next() == Some(major.as_str())
                    && parts.next() == Some(minor.as_str())
                    && parts.next().is_none_or(|patch| {
                        !patch.chars().all(|c| c.is_ascii_digit())
                            || patch.is_empty()
                            || version == wit.version
                    });
                if !same {
                    wrong.push(format!("{file}:{}: @{version}", number + 1));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "these spell out an interface version other than wit/policy.wit's {} (derive it from \
         the WIT or kits/vectors/contract.json, or fix it): {wrong:#?}",
        wit.version
    );
}

/// The engine is independent of the bindings: the mapping to the WIT-generated types lives in
/// `bindings/mapping` (it once lived in policy-core, where half of it was dead code in every
/// crate that expanded it, behind `#[allow(dead_code)]`).
#[test]
fn policy_core_knows_no_wit_generated_name_and_allows_no_dead_code() {
    let src = repo().join("policy-core/src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            for needle in [
                "wit::",
                "wit_mapping",
                "allow(dead_code",
                "wit_bindgen",
                "bindgen!",
            ] {
                if line.contains(needle) {
                    found.push(format!("{}:{}: {needle}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "policy-core names the bindings: {found:#?}"
    );
}

/// hostile.rs is also compiled into the host's test binary (by path), so its own check lives here.
#[test]
fn the_hostile_fixtures_version_is_the_wits() {
    assert_eq!(
        crate::plugins::hostile::VERSION,
        wit().version,
        "tests/tests/plugins/hostile.rs: VERSION is not wit/policy.wit's version"
    );
}
