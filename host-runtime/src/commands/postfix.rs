//! `tlsfallback postfix serve` and `tlsfallback postfix config`.

use std::io::Write;
use std::path::Path;

use crate::postfix::policy::LOW_CIPHERLIST;
use crate::postfix::{Daemon, ListenAddress, serve};

/// The `main.cf` lines that hand Postfix's TLS policy to the daemon at `address`.
#[must_use]
pub fn config_text(address: &ListenAddress, map_name: &str, log: Option<&Path>) -> String {
    let table = address.postfix_table(map_name);
    let log_note = match log {
        Some(path) => format!(
            "# The log the daemon follows (--log {0}); if Postfix logs through syslog instead,\n\
             # point --log at the file syslog writes (for example /var/log/mail.log).\n\
             maillog_file = {0}\n",
            path.display()
        ),
        None => {
            "# Start the daemon with --log pointing at Postfix's log (maillog_file, or the file\n\
                 # syslog writes, for example /var/log/mail.log): that is how it learns outcomes.\n"
                .to_owned()
        }
    };
    format!(
        "# tlsfallback: the TLS fallback dance for Postfix (add to main.cf, then `postfix reload`).\n\
         # Tables are searched in order: keep MTA-STS or DANE tables you already have before this one.\n\
         smtp_tls_policy_maps = {table}\n\
         # The daemon learns each attempt's outcome from these lines; recipients are logged with\n\
         # their local parts quoted (Postfix's default), so no address can pass for a field.\n\
         smtp_tls_loglevel = 1\n\
         info_log_address_format = external\n\
         # The legacy tier answers `ciphers=low`: TLS 1.0 and SHA-1 suites need OpenSSL security level 0.\n\
         tls_low_cipherlist = {LOW_CIPHERLIST}\n\
         {log_note}"
    )
}

/// Runs the daemon until it fails, writing one line per lookup and per outcome to `log`.
///
/// # Errors
///
/// As for [`serve`].
pub fn run(
    daemon: &mut Daemon<'_>,
    address: &ListenAddress,
    log_file: Option<(&Path, bool)>,
    map_name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    serve(daemon, address, log_file, &mut |bound| {
        let _ = writeln!(
            out,
            "listening on {bound}; main.cf: smtp_tls_policy_maps = {}",
            bound.postfix_table(map_name)
        );
        let _ = out.flush();
    })
}
