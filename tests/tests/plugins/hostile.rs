//! Hostile policy components, built by the test suite from WebAssembly text: a core module whose
//! `decide` misbehaves in one chosen way, given the `tlsfallback:policy` world's metadata and
//! wrapped into a component by `wit-component` (what `wasm-tools component new` does).
//!
//! Hand-written core modules rather than Rust guests because the interesting failures (a bad
//! discriminant, a 10 MB list, `memory.grow` in a loop) are what a safe guest language will not
//! write.

use policy_core::{Action, Tier, TlsParameters};

/// The WIT package, read from the repository so that the fixtures follow the contract.
const WIT: &str = include_str!("../../../wit/policy.wit");
/// The version the repository's WIT declares.
pub(crate) const VERSION: &str = "0.2.0";

/// Where the prepared decision record sits in the fixture's memory.
const DECISION_AT: u32 = 1024;
/// Where a prepared history blob sits.
const HISTORY_AT: u32 = 2048;
/// The size of the canonical-ABI `decision` record (see `record_bytes`).
const DECISION_SIZE: usize = 40;

/// What the fixture's `decide` does.
#[derive(Clone, Debug)]
pub(super) enum Behaviour {
    /// Returns the given decision, with an empty history.
    Answer(Action),
    /// Returns the given decision, with this history blob (at most 2 KiB).
    AnswerWithHistory(Action, Vec<u8>),
    /// `loop br 0`: never returns.
    InfiniteLoop,
    /// Grows memory a MiB at a time until refused.
    MemoryBomb,
    /// `unreachable` on the first instruction.
    Trap,
    /// Traps when `now` is odd; otherwise asks for a modern-TLS attempt.
    TrapWhenNowIsOdd,
    /// Returns a decision whose `action` discriminant is 9 (there are four cases).
    BadDiscriminant,
    /// Returns a decision whose history blob points 1 GiB past the end of memory.
    HistoryOutOfBounds,
    /// Returns a valid decision with a history blob of `len` bytes.
    HugeHistory {
        /// The blob's length.
        len: u32,
    },
}

/// A component exporting `tlsfallback:policy/engine@{version}` that behaves as told.
#[must_use]
pub(super) fn component(behaviour: &Behaviour, version: &str) -> Vec<u8> {
    let mut history: &[u8] = &[];
    let (body, record) = match behaviour {
        Behaviour::Answer(action) => (answer(), record_bytes(action, HISTORY_AT, 0)),
        Behaviour::AnswerWithHistory(action, blob) => {
            history = blob;
            let len = u32::try_from(blob.len()).expect("a small blob");
            (answer(), record_bytes(action, HISTORY_AT, len))
        }
        Behaviour::InfiniteLoop => (
            "(loop $forever (br $forever)) (i32.const 0)".to_owned(),
            Vec::new(),
        ),
        Behaviour::MemoryBomb => (
            "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) \
             (i32.const 0)"
                .to_owned(),
            Vec::new(),
        ),
        Behaviour::Trap => ("unreachable".to_owned(), Vec::new()),
        Behaviour::TrapWhenNowIsOdd => {
            let modern = Action::Attempt {
                tier: Tier::ModernTls,
                tls: Tier::ModernTls.parameters(policy_core::Verification::None),
                delay_secs: 0,
            };
            (
                // `now` is the last parameter (local 14).
                format!(
                    "(if (i32.wrap_i64 (i64.and (local.get 14) (i64.const 1))) \
                     (then unreachable)) {}",
                    answer()
                ),
                record_bytes(&modern, HISTORY_AT, 0),
            )
        }
        Behaviour::BadDiscriminant => {
            let mut record = record_bytes(&Action::Done, HISTORY_AT, 0);
            record[0] = 9;
            (answer(), record)
        }
        Behaviour::HistoryOutOfBounds => (answer(), record_bytes(&Action::Done, 1 << 30, 4096)),
        Behaviour::HugeHistory { len } => {
            // The blob lives past the first page, in memory grown for it.
            let pages = len.div_ceil(65_536) + 1;
            (
                format!("(drop (memory.grow (i32.const {pages}))) {}", answer()),
                record_bytes(&Action::Done, 65_536, *len),
            )
        }
    };
    let module = core_module(&body, &record, history, version);
    let mut bytes = wat::parse_str(&module).expect("the fixture's WAT is valid");
    let mut resolve = wit_parser::Resolve::new();
    let package = resolve
        .push_str(
            "policy.wit",
            &WIT.replace(&format!("@{VERSION}"), &format!("@{version}")),
        )
        .expect("the WIT parses");
    let world = resolve
        .select_world(&[package], Some("policy-engine"))
        .expect("the world exists");
    wit_component::embed_component_metadata(
        &mut bytes,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .expect("embedding the world");
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .expect("the fixture wraps into a component")
}

/// A component that imports a WASI interface (and exports nothing): the shape of a component
/// built with a language's standard WASI toolchain.
#[must_use]
pub(super) fn importing_wasi() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "wasi:cli/environment@0.2.3" (instance
                (export "get-arguments" (func (result (list string))))
            ))
        )"#,
    )
    .expect("valid component WAT")
}

fn answer() -> String {
    format!("(i32.const {DECISION_AT})")
}

/// The core module: a bump allocator for the host's arguments, a constructor that makes a
/// resource handle, and `decide` with `body`; the decision `record` and a `history` blob in
/// its data.
fn core_module(body: &str, record: &[u8], history: &[u8], version: &str) -> String {
    let interface = format!("tlsfallback:policy/engine@{version}");
    let escaped = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("\\{b:02x}")).collect() };
    let data = escaped(record);
    let history = escaped(history);
    format!(
        r#"(module
  (import "[export]{interface}" "[resource-new]decider" (func $new (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32) (local $end i32)
    (local.set $at (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get 2))))
    (local.set $end (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.shr_u
        (i32.add (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                 (i32.const 65535))
        (i32.const 16))))))
    (global.set $heap (local.get $end))
    (local.get $at))
  (func (export "{interface}#[constructor]decider")
    (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $new (i32.const 1)))
  (func (export "{interface}#[dtor]decider") (param i32))
  (func (export "{interface}#[method]decider.decide")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
    {body})
  (data (i32.const {DECISION_AT}) "{data}")
  (data (i32.const {HISTORY_AT}) "{history}")
)"#
    )
}

/// The canonical-ABI layout of `decision` (size 40, align 4): `action` variant at 0 (tag byte,
/// payload at 4: `attempt` is tier@4, option<tls-parameters>@5 (tag, then six one-byte fields),
/// delay@12; `defer` u32@4; `bounce` class@4 subject@6 detail@8), `reason`@16, `report` flags
/// u16@18, `history` list (pointer@20, length@24), `history-error` option@28 (tag, variant@32).
fn record_bytes(action: &Action, history_at: u32, history_len: u32) -> Vec<u8> {
    let mut r = vec![0u8; DECISION_SIZE];
    match *action {
        Action::Attempt {
            tier,
            tls,
            delay_secs,
        } => {
            r[0] = 0;
            r[4] = tier_index(tier);
            if let Some(tls) = tls {
                r[5] = 1;
                r[6..12].copy_from_slice(&tls_bytes(&tls));
            }
            r[12..16].copy_from_slice(&delay_secs.to_le_bytes());
        }
        Action::Defer { retry_after_secs } => {
            r[0] = 1;
            r[4..8].copy_from_slice(&retry_after_secs.to_le_bytes());
        }
        Action::Bounce { status } => {
            r[0] = 2;
            r[4] = status.class;
            r[6..8].copy_from_slice(&status.subject.to_le_bytes());
            r[8..10].copy_from_slice(&status.detail.to_le_bytes());
        }
        Action::Done => r[0] = 3,
    }
    // `reason` stays 0: `strongest-tier`, the first case.
    r[20..24].copy_from_slice(&history_at.to_le_bytes());
    r[24..28].copy_from_slice(&history_len.to_le_bytes());
    r
}

fn tier_index(tier: Tier) -> u8 {
    match tier {
        Tier::Cleartext => 0,
        Tier::LegacyTls => 1,
        Tier::ModernTls => 2,
        Tier::AuthenticatedTls => 3,
    }
}

fn tls_bytes(tls: &TlsParameters) -> [u8; 6] {
    use policy_core::{CipherPolicy, TlsVersion, Verification};
    let version = |v: TlsVersion| match v {
        TlsVersion::Tls1_0 => 0,
        TlsVersion::Tls1_1 => 1,
        TlsVersion::Tls1_2 => 2,
        TlsVersion::Tls1_3 => 3,
    };
    [
        version(tls.min_version),
        version(tls.max_version),
        match tls.ciphers {
            CipherPolicy::Strong => 0,
            CipherPolicy::LegacyCompatible => 1,
        },
        tls.security_level,
        match tls.verification {
            Verification::None => 0,
            Verification::Dane => 1,
            Verification::Webpki => 2,
        },
        u8::from(tls.fallback_scsv),
    ]
}
