//! The workspace's shape, as docs/architecture.md states it: the embedding crate (and the C kit
//! that links it alone) pulls in no OpenSSL, SQLite, DNS resolver, HTTP client or clap; no crate's
//! modules import each other in a cycle; the binary's `main` only dispatches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The normal (non-dev, non-build) dependency tree of `package`, one crate name per line.
fn dependencies_of(package: &str) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_embedding_crate_and_the_c_kit_link_no_openssl_sqlite_dns_http_or_clap() {
    for package in ["tlsfallback-engine", "tlsfallback-c"] {
        let tree = dependencies_of(package);
        for forbidden in [
            "openssl",
            "rusqlite",
            "hickory",
            "reqwest",
            "clap",
            "tlsfallback-mta",
            "tlsfallback-testkit",
        ] {
            let found: Vec<&str> = tree
                .lines()
                .filter(|line| line.starts_with(forbidden))
                .collect();
            assert!(found.is_empty(), "{package} depends on {found:?}");
        }
    }
}

#[test]
fn the_mta_crate_knows_nothing_of_the_command_line_or_the_test_kit() {
    let tree = dependencies_of("tlsfallback-mta");
    for forbidden in ["clap", "tlsfallback-testkit", "tlsfallback-cli"] {
        assert!(
            !tree.lines().any(|line| line.starts_with(forbidden)),
            "tlsfallback-mta depends on {forbidden}"
        );
    }
}

/// The module of `file` under `src`: `postfix::daemon` for `src/postfix/daemon.rs`.
#[test]
fn the_mta_crate_returns_typed_errors_not_anyhow() {
    let mut files = Vec::new();
    rust_files(&workspace().join("host-runtime/mta/src"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let code = std::fs::read_to_string(&file).unwrap();
        assert!(
            !code.contains("anyhow::") && !code.contains("anyhow!"),
            "{} uses anyhow: each layer of tlsfallback-mta has its own error enum",
            file.display()
        );
    }
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers after each `prefix` in `code` (`crate::` gives `store` for `crate::store::X`).
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(at, _)| {
            // A whole path segment: not `$crate::` or `tlsfallback_mta::crate::`.
            !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, _)| {
            let rest = &code[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Edges between the top-level modules of the crate at `src`, from `use crate::X` and
/// `super::X` paths outside test modules (test code may reach anywhere).
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(src, &file);
        let Some(top) = module.first().cloned() else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut targets: BTreeSet<String> = names_after(code, "crate::")
            .into_iter()
            .map(str::to_owned)
            .collect();
        // `super::X` from a module one level down names a sibling top-level module.
        if module.len() == 2 {
            targets.extend(names_after(code, "super::").into_iter().map(str::to_owned));
        }
        targets.remove(&top);
        edges.entry(top).or_default().extend(targets);
    }
    edges
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_of_the_host_has_an_import_cycle_between_its_modules() {
    for crate_dir in [
        "host-runtime/engine",
        "host-runtime/mta",
        "host-runtime/testkit",
        "host-runtime/cli",
    ] {
        let src = workspace().join(crate_dir).join("src");
        let edges = module_edges(&src);
        assert!(edges.len() > 1, "{crate_dir}: no modules found");
        if let Some(cycle) = find_cycle(&edges) {
            panic!("{crate_dir}: modules import each other in a cycle: {cycle:?}");
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle_when_there_is_one() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(from, to)| (from.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    let cycle = find_cycle(&edges).expect("a -> b -> c -> a");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
}

#[test]
fn main_only_parses_and_dispatches() {
    let main = std::fs::read_to_string(workspace().join("host-runtime/cli/src/main.rs")).unwrap();
    let code_lines = main
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with("//"))
        .count();
    assert!(
        code_lines <= 8,
        "main.rs has {code_lines} lines of code: subcommand bodies belong in src/commands/"
    );
    assert!(main.contains("Cli::parse().run()"), "{main}");
}
