use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tlsfallback_testkit::peers::Identity;
use tlsfallback_testkit::rig::resolv::with_resolv_conf;

/// A private Postfix instance (Debian's package) under a temporary directory: its own queue,
/// its own `maillog_file`, daemons unchrooted and without the port-25 listener.
pub(crate) struct Instance {
    dir: tempfile::TempDir,
}

impl Instance {
    /// Writes `main.cf` (the common part, then `main_extra` with `{r}` for the directory) and
    /// `master.cf` (Debian's services, then `listeners`), and starts Postfix.
    pub(crate) fn start(
        myhostname: &str,
        main_extra: &dyn Fn(&str) -> String,
        listeners: &dyn Fn(&str) -> String,
    ) -> Self {
        Self::start_with_resolver(myhostname, None, main_extra, listeners)
    }

    /// As [`Instance::start`], but when `nameserver` is given Postfix (its master and every
    /// daemon, which inherit the mount namespace) resolves through that server on port 53 alone,
    /// as a private `/etc/resolv.conf` says ([`with_resolv_conf`]). `postfix stop` and the other
    /// commands still run outside: they find the master by its pid file.
    pub(crate) fn start_with_resolver(
        myhostname: &str,
        nameserver: Option<Ipv4Addr>,
        main_extra: &dyn Fn(&str) -> String,
        listeners: &dyn Fn(&str) -> String,
    ) -> Self {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "these tests run a real Postfix: install it with scripts/setup (apt-get install postfix)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Postfix's daemons run as the postfix user and must reach the queue under this directory.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["queue", "data", "mail"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::os::unix::fs::chown(root.join("mail"), Some(65534), Some(65534)).unwrap();
        let postfix_uid = uid_of("postfix");
        std::os::unix::fs::chown(root.join("data"), Some(postfix_uid), None).unwrap();
        let r = root.display().to_string();
        std::fs::write(
            root.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {myhostname}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file_prefixes = /tmp, /var
maillog_file = {r}/maillog
smtputf8_enable = no
{}",
                main_extra(&r)
            ),
        )
        .unwrap();
        // Debian's master.cf without its port-25 listener, chroot off (no chroot set-up here).
        let stock = std::fs::read_to_string("/etc/postfix/master.cf").unwrap();
        let mut master: String = stock
            .lines()
            .filter(|l| {
                !l.starts_with('#') && !l.starts_with("smtp      inet") && !l.trim().is_empty()
                    || l.starts_with(' ')
            })
            .map(|l| unchroot(l) + "\n")
            .collect();
        master.push_str(&listeners(&r));
        std::fs::write(root.join("master.cf"), master).unwrap();
        let instance = Self { dir };
        let mut start = match nameserver {
            Some(ip) => {
                with_resolv_conf(Path::new(&r), ip, "postfix", &["-c", &r, "start"]).unwrap()
            }
            None => {
                let mut command = Command::new("postfix");
                command.args(["-c", &r, "start"]);
                command
            }
        };
        let status = start.output().unwrap();
        assert!(
            status.status.success(),
            "postfix start failed: {}{}",
            String::from_utf8_lossy(&status.stderr),
            instance.log()
        );
        instance
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("maillog")).unwrap_or_default()
    }

    pub(crate) fn wait_for(&self, mut ready: impl FnMut() -> bool, what: &str) {
        // Bounded wait (30 s) for Postfix's own asynchronous work; the tests assert outcomes,
        // not timing.
        for _ in 0..600 {
            if ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Postfix never produced {what}: {}", self.log());
    }

    /// Runs one of Postfix's commands (`postqueue`, `sendmail`, `postconf`) on this instance.
    pub(crate) fn command(&self, program: &str, args: &[&str], stdin: &str) -> String {
        use std::io::Write as _;
        // sendmail(1) spells the configuration directory option -C, the others -c.
        let flag = if program == "sendmail" { "-C" } else { "-c" };
        let mut child = Command::new(program)
            .arg(flag)
            .arg(self.root())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .args(["-c", &self.root().display().to_string(), "stop"])
            .output();
    }
}

/// A receiving Postfix with one smtpd listener per kind of receiving MTA, delivering every
/// domain it accepts to one Maildir.
pub(crate) struct PrivatePostfix {
    instance: Instance,
    pub(crate) modern: u16,
    pub(crate) legacy: u16,
    pub(crate) plain: u16,
    pub(crate) wrong_name: u16,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl std::ops::Deref for PrivatePostfix {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.instance
    }
}

impl PrivatePostfix {
    pub(crate) fn start() -> Self {
        let (modern, legacy, plain, wrong_name) =
            (free_port(), free_port(), free_port(), free_port());
        let instance = Instance::start(
            "receiver.test",
            &|r| {
                format!(
                    "mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.test modern.test legacy.test pinned.test bank.test evil.test victim.test
virtual_mailbox_base = {r}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_tls_cert_file = {r}/cert.pem
smtpd_tls_key_file = {r}/cert.key
smtpd_tls_security_level = may
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
"
                )
            },
            &|r| {
                let write_identity = |name: &str, stem: &str| {
                    let identity = Identity::self_signed(name).unwrap();
                    let pem = identity.certificate.to_pem().unwrap();
                    std::fs::write(format!("{r}/{stem}.pem"), &pem).unwrap();
                    std::fs::write(
                        format!("{r}/{stem}.key"),
                        identity.key.private_key_to_pem_pkcs8().unwrap(),
                    )
                    .unwrap();
                    pem
                };
                let mut anchors = write_identity("localhost", "cert");
                anchors.extend(write_identity("wrong.test", "wrong"));
                std::fs::write(format!("{r}/ca.pem"), anchors).unwrap();
                format!(
                    "127.0.0.1:{modern} inet n - n - - smtpd -o smtpd_tls_protocols=>=TLSv1.2
127.0.0.1:{legacy} inet n - n - - smtpd -o smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1.1,!TLSv1.2,!TLSv1.3 -o smtpd_tls_ciphers=low -o tls_low_cipherlist=ALL:!aNULL:@SECLEVEL=0
127.0.0.1:{plain} inet n - n - - smtpd -o smtpd_tls_security_level=none
127.0.0.1:{wrong_name} inet n - n - - smtpd -o smtpd_tls_cert_file={r}/wrong.pem -o smtpd_tls_key_file={r}/wrong.key
"
                )
            },
        );
        let receiver = Self {
            instance,
            modern,
            legacy,
            plain,
            wrong_name,
        };
        for port in [modern, legacy, plain, wrong_name] {
            receiver.wait_for(
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                "a listener",
            );
        }
        receiver
    }

    /// The delivered messages (Maildir `new/`), waiting until there are `count`.
    pub(crate) fn mailbox(&self, count: usize) -> Vec<String> {
        self.wait_for(|| self.messages().len() >= count, "the delivered messages");
        self.messages()
    }

    /// The delivered messages now.
    pub(crate) fn messages(&self) -> Vec<String> {
        let new = self.root().join("mail/inbox/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    }

    fn deliver(&self, port: u16, extra: &[&str], body: &str) -> (i32, String) {
        let db = self.root().join("history.sqlite3");
        let policy = self.root().join("policy.toml");
        std::fs::write(&policy, "[policy]\nstep_down_delay_secs = 0\n").unwrap();
        let mx = format!("localhost:{port}");
        let mut args = vec![
            "deliver",
            "--from",
            "sender@sender.test",
            "--to",
            "user@example.test",
            "--mx",
            &mx,
            "--db",
            db.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = crate::util::run(&args, body);
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn unchroot(line: &str) -> String {
    // Column 5 of a service line is "chroot"; Debian sets it to y for most daemons.
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() >= 8 && !line.starts_with(' ') && fields[4] == "y" {
        let mut fields = fields;
        fields[4] = "n";
        return fields.join(" ");
    }
    line.to_owned()
}

fn uid_of(user: &str) -> u32 {
    let output = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the postfix user exists")
}

pub(crate) fn received_header(message: &str) -> String {
    let mut lines = message.lines();
    let mut header = String::new();
    while let Some(line) = lines.next() {
        if line.starts_with("Received:") {
            header.push_str(line);
            for cont in lines.by_ref() {
                if !cont.starts_with([' ', '\t']) {
                    break;
                }
                header.push_str(cont);
            }
            break;
        }
    }
    header
}

const BODY: &str = "Subject: end to end\n\n.a line that starts with a dot\nand the rest\n";

#[test]
fn postfix_receives_each_tier_and_records_the_tls_the_engine_chose() {
    let postfix = PrivatePostfix::start();

    let (code, log) = postfix.deliver(postfix.modern, &[], BODY);
    assert_eq!(code, 0, "{log}");
    let (code, log) = postfix.deliver(postfix.legacy, &[], BODY);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("tier=modern-tls outcome=tls-alert protocol-version"),
        "{log}"
    );
    let (code, log) = postfix.deliver(postfix.plain, &[], BODY);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tier=cleartext outcome=success"), "{log}");

    let messages = postfix.mailbox(3);
    let by_tls = |needle: &str| {
        messages
            .iter()
            .find(|m| received_header(m).contains(needle))
            .cloned()
    };
    let modern = by_tls("using TLSv1.3").expect("a TLS 1.3 message");
    let legacy = by_tls("using TLSv1 with cipher").expect("a TLS 1.0 message");
    let plain = messages
        .iter()
        .find(|m| !received_header(m).contains("using "))
        .expect("a cleartext message");
    for message in [&modern, &legacy, plain] {
        assert!(
            message.contains("\n.a line that starts with a dot\nand the rest\n"),
            "{message}"
        );
    }
    let legacy_header = received_header(&legacy);
    assert!(
        legacy_header.contains("-SHA "),
        "a CBC-SHA1 suite: {legacy_header}"
    );

    // Memory: the legacy listener is reached at legacy TLS straight away the second time.
    let (code, log) = postfix.deliver(postfix.legacy, &[], BODY);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("tier=modern-tls"), "{log}");
    // Postfix's own log agrees on what was negotiated.
    postfix.wait_for(
        || {
            postfix
                .log()
                .contains("TLS connection established from localhost[127.0.0.1]: TLSv1 with cipher")
        },
        "the TLS log line",
    );
}

#[test]
fn postfix_with_a_certificate_for_another_name_fails_authentication_under_mta_sts() {
    let postfix = PrivatePostfix::start();
    let ca = postfix.root().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let (code, log) = postfix.deliver(
        postfix.wrong_name,
        &["--mta-sts", "enforce", "--ca-file", ca],
        BODY,
    );
    assert_eq!(code, 75, "deferred, not sent: {log}");
    assert!(
        log.contains("tier=authenticated-tls outcome=certificate-error name-mismatch"),
        "{log}"
    );
    assert!(
        !log.contains("tier=modern-tls") && !log.contains("tier=cleartext"),
        "{log}"
    );
    // The right name, trusted: authenticated TLS goes through.
    let (code, log) = postfix.deliver(
        postfix.modern,
        &["--mta-sts", "enforce", "--ca-file", ca],
        BODY,
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("tier=authenticated-tls outcome=success"),
        "{log}"
    );
    assert_eq!(postfix.mailbox(1).len(), 1);
}
