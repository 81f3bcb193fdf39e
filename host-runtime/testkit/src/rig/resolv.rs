//! Running a program whose libc resolver asks a server of the test's choosing.
//!
//! Postfix (and `getent`, `dig` without `@server`) resolve through glibc, which reads its
//! servers from `/etc/resolv.conf` only, and `resolv.conf` has no port: a `nameserver` line is an
//! address, always asked on port 53. So a test that points Postfix at the rig's validating
//! unbound needs unbound on some `IP:53` ([`crate::rig::dnssec::RigSpec::resolver_on`]) and the
//! program to see a `resolv.conf` naming that IP, without touching the machine's own file (other
//! tests and programs share it). [`with_resolv_conf`] gives the program a private mount
//! namespace in which a file of the test's is bind-mounted over `/etc/resolv.conf`; the program's
//! children (Postfix's master and every daemon it starts) inherit the namespace, and nothing
//! outside it sees the change. It needs root (`unshare --mount`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// What goes into the private `resolv.conf` besides the `nameserver` line:
/// - `trust-ad`: since glibc 2.31 the stub resolver clears the AD bit of every answer unless
///   `resolv.conf` says the server is trusted; Postfix's `smtp_dns_support_level = dnssec`
///   decides "secure" from that bit alone (it does no validation of its own), so without this
///   every DANE destination would look insecure and plain Postfix would not do DANE at all.
/// - `edns0`: EDNS, so signed answers (with their RRSIGs) fit in UDP; Postfix asks for DO itself.
/// - `timeout:2 attempts:2`: the rig answers at once or never; a test waiting on a dead server
///   fails in seconds, not glibc's default 5 s times 2 per name.
const RESOLV_OPTIONS: &str = "options trust-ad edns0 timeout:2 attempts:2";

/// The script `sh -c` runs in the new namespace: `$0` is the file to mount over
/// `/etc/resolv.conf`, `$@` the program and its arguments. `exec`, so the program's pid is the
/// one `unshare` started (and `postfix start` daemonizes its master from there).
const MOUNT_AND_EXEC: &str = "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"";

/// Writes `dir/resolv.conf` (naming `nameserver`, with [`RESOLV_OPTIONS`]) and returns a
/// [`Command`] that runs `program args...` in a private mount namespace where that file is
/// `/etc/resolv.conf`:
/// `unshare --mount --propagation private -- sh -c 'mount --bind "$0" /etc/resolv.conf && exec
/// "$@"' dir/resolv.conf program args...`.
///
/// `--propagation private` keeps the bind mount from propagating back to the machine's mount
/// namespace where `/` is a shared mount (systemd's default). It is util-linux's default too;
/// spelled out because the test's isolation rests on it.
///
/// # Errors
///
/// Writing `dir/resolv.conf` failed.
pub fn with_resolv_conf(
    dir: &Path,
    nameserver: Ipv4Addr,
    program: &str,
    args: &[&str],
) -> std::io::Result<Command> {
    let file = dir.join("resolv.conf");
    std::fs::write(&file, resolv_conf_text(nameserver))?;
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(MOUNT_AND_EXEC)
        .arg(&file)
        .arg(program)
        .args(args);
    Ok(command)
}

/// The private `resolv.conf`: one server, no search domains (a name the rig does not serve must
/// fail, not be retried under the machine's search list).
fn resolv_conf_text(nameserver: Ipv4Addr) -> String {
    format!("nameserver {nameserver}\n{RESOLV_OPTIONS}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_resolv_conf_names_one_server_and_trusts_its_ad_bit() {
        assert_eq!(
            resolv_conf_text(Ipv4Addr::new(127, 53, 1, 2)),
            "nameserver 127.53.1.2\noptions trust-ad edns0 timeout:2 attempts:2\n"
        );
    }
}
