use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `tlsfallback` with `args`, feeding `stdin`.
pub(crate) fn run(args: &[&str], stdin: &str) -> Output {
    run_with_env(args, stdin, &[])
}

/// Runs `tlsfallback` with `args`, feeding `stdin` (any bytes).
pub(crate) fn run_bytes(args: &[&str], stdin: &[u8]) -> Output {
    run_with_env_bytes(args, stdin, &[])
}

/// Runs `tlsfallback` with `args` and extra environment variables, feeding `stdin`.
pub(crate) fn run_with_env(args: &[&str], stdin: &str, env: &[(&str, String)]) -> Output {
    run_with_env_bytes(args, stdin.as_bytes(), env)
}

fn run_with_env_bytes(args: &[&str], stdin: &[u8], env: &[(&str, String)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlsfallback"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The stdout of a successful run, as text.
pub(crate) fn stdout_of(args: &[&str], stdin: &str) -> String {
    let output = run(args, stdin);
    assert!(
        output.status.success(),
        "tlsfallback {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Each stdout line of a `decide` run, parsed.
pub(crate) fn decide(args: &[&str], stdin: &str) -> Vec<serde_json::Value> {
    let mut all = vec!["decide"];
    all.extend_from_slice(args);
    stdout_of(&all, stdin)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one (as root), or says why it cannot.
    pub(crate) fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of the disk; the filler's path.
    pub(crate) fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8]);
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The start of a `deliver` command line: the test envelope, then `--mx` (the MX comes next).
pub(crate) const DELIVER_TO_MX: [&str; 6] = [
    "deliver",
    "--from",
    "a@example.test",
    "--to",
    "b@example.test",
    "--mx",
];

/// The arguments of `tlsfallback deliver` of one test message from `a@example.test` to
/// `b@example.test` through `mx`, with the test's policy file and history database.
pub(crate) fn deliver_args<'a>(mx: &'a str, policy: &'a Path, db: &'a Path) -> Vec<&'a str> {
    let mut args = DELIVER_TO_MX.to_vec();
    args.extend([
        mx,
        "--policy",
        policy.to_str().expect("a UTF-8 path"),
        "--db",
        db.to_str().expect("a UTF-8 path"),
    ]);
    args
}
