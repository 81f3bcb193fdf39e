use std::path::{Path, PathBuf};

use tlsfallback_mta::fuzzing::TARGETS;

/// `fuzz/corpus/` in this source tree.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_fuzz_input_still_passes_its_parser() {
    // The fuzzers' corpus (their seeds, and every input that once crashed a parser) replayed
    // through the entry points the fuzz targets call: a parser that regresses on one fails here.
    for target in TARGETS {
        let name = target.name;
        let inputs = files(&corpus().join(name));
        assert!(!inputs.is_empty(), "fuzz/corpus/{name} has no input");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                outcome.is_ok(),
                "fuzz/corpus/{name}/{} fails its parser's invariants",
                input.file_name().unwrap().to_string_lossy()
            );
        }
    }
}

#[test]
fn every_corpus_directory_belongs_to_a_fuzz_target() {
    let known: Vec<&str> = TARGETS.iter().map(|target| target.name).collect();
    for dir in files(&corpus()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            known.contains(&name.as_str()),
            "fuzz/corpus/{name}: no such target"
        );
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(target.is_file(), "no fuzz target {}", target.display());
    }
}
