//! libtlsfallback: the `tlsfallback:policy` component behind a C ABI that hides wasmtime.
//!
//! An engine is made once (from the text of a policy file, or the defaults) and asked per
//! attempt with the JSON request of `tlsfallback decide`; it answers with that command's JSON
//! response, byte for byte. The contract is `include/tlsfallback.h`, and the JSON is the one
//! the README documents. JSON rather than C structs because it is the one contract every host
//! shares (the CLI, this library, the test vectors), and a C MTA can write a request with
//! `snprintf`.
//!
//! Every entry point catches panics (none cross the C boundary), and null or non-UTF-8 input is
//! an error, never undefined behaviour on our side.
#![allow(unsafe_code)] // The C ABI: raw pointers in and out, checked before use.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tlsfallback_engine::fleet_protocol;

use tlsfallback_engine::answer::{Buffers, answer, error_text};
use tlsfallback_engine::component::PolicyComponent;
use tlsfallback_engine::config::PolicyFile;

/// An engine: the component on a warm instance, the policy file, scratch buffers. Not
/// thread-safe: one per thread, or a lock around it.
pub struct Engine {
    component: PolicyComponent,
    policy_file: PolicyFile,
    buffers: Buffers,
}

/// A C string the caller frees with [`tlsfallback_string_free`]; null if `text` has a NUL.
fn to_c(text: String) -> *mut c_char {
    CString::new(text).map_or(ptr::null_mut(), CString::into_raw)
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Reads a C string argument.
///
/// # Safety
///
/// `text` is null or points to a NUL-terminated string.
unsafe fn from_c<'a>(text: *const c_char, what: &str) -> Result<&'a str, String> {
    if text.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// Creates an engine. `policy_toml` is the text of a policy file (`[policy]`, `[[destination]]`),
/// or NULL for the defaults. On failure returns NULL and, when `error` is not NULL, stores a
/// message there (free it with [`tlsfallback_string_free`]).
///
/// # Safety
///
/// `policy_toml` is NULL or a NUL-terminated string; `error` is NULL or points to writable
/// storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_engine_new(
    policy_toml: *const c_char,
    error: *mut *mut c_char,
) -> *mut Engine {
    let made = catch_unwind(|| -> Result<Engine, String> {
        let policy_file = if policy_toml.is_null() {
            PolicyFile::default()
        } else {
            // SAFETY: checked non-null; the caller promises a C string.
            let text = unsafe { from_c(policy_toml, "policy_toml") }?;
            let file = PolicyFile::parse(text).map_err(|e| format!("policy: {e:#}"))?;
            if file
                .plugin_config()
                .map_err(|e| format!("{e:#}"))?
                .is_some()
            {
                return Err("policy: [plugin] is not supported by libtlsfallback".to_owned());
            }
            file
        };
        let component = PolicyComponent::builtin().map_err(|e| format!("{e:#}"))?;
        Ok(Engine {
            component,
            policy_file,
            buffers: Buffers::default(),
        })
    });
    let message = match made {
        Ok(Ok(engine)) => return Box::into_raw(Box::new(engine)),
        Ok(Err(message)) => message,
        Err(_) => "tlsfallback_engine_new panicked".to_owned(),
    };
    if !error.is_null() {
        // SAFETY: the caller promises writable storage.
        unsafe { *error = to_c(message) };
    }
    ptr::null_mut()
}

/// Decides one request: `request_json` is a request line of `tlsfallback decide` (README), the
/// result is its response line, without a newline. A bad request, or an engine failure, gives
/// `{"error":"…"}`. Never NULL unless memory runs out; free it with [`tlsfallback_string_free`].
///
/// # Safety
///
/// `engine` comes from [`tlsfallback_engine_new`] and is not used by another thread at the same
/// time; `request_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_decide(
    engine: *mut Engine,
    request_json: *const c_char,
) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| -> String {
        // SAFETY: the caller promises an engine from tlsfallback_engine_new, used by one thread.
        let Some(engine) = (unsafe { engine.as_mut() }) else {
            return error_json("engine is NULL");
        };
        // SAFETY: the caller promises a C string.
        let request = match unsafe { from_c(request_json, "request_json") } {
            Ok(request) => request,
            Err(message) => return error_json(&message),
        };
        let mut output = Vec::with_capacity(512);
        match answer(
            &mut engine.component,
            &engine.policy_file,
            request.as_bytes(),
            &mut engine.buffers,
            &mut output,
        ) {
            // A plugin failure, if the engine ever had one, is in the answer's `plugin_failure`.
            Ok(_plugin_failure) => {
                String::from_utf8(output).unwrap_or_else(|_| error_json("non-UTF-8 output"))
            }
            Err(failure) => error_json(&error_text(&failure)),
        }
    }));
    to_c(result.unwrap_or_else(|_| error_json("tlsfallback_decide panicked")))
}

/// Frees a string this library returned. NULL is allowed.
///
/// # Safety
///
/// `text` is NULL or a string this library returned, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: the caller promises a string from CString::into_raw, freed once.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// Frees an engine. NULL is allowed.
///
/// # Safety
///
/// `engine` is NULL or from [`tlsfallback_engine_new`], not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_engine_free(engine: *mut Engine) {
    if !engine.is_null() {
        // SAFETY: the caller promises a pointer from Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(engine) });
    }
}

/// Reads an optional base64 history argument (NULL: none).
///
/// # Safety
///
/// As [`from_c`].
unsafe fn history_arg(text: *const c_char, what: &str) -> Result<Option<Vec<u8>>, String> {
    if text.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let text = unsafe { from_c(text, what) }?;
    BASE64
        .decode(text)
        .map(Some)
        .map_err(|e| format!("{what}: not valid base64: {e}"))
}

/// `{"history": base64}` or `{"error": message}` for a merge result.
fn merge_json(result: Result<policy_core::HistoryBlob, policy_core::HistoryError>) -> String {
    match result {
        Ok(blob) => serde_json::json!({ "history": BASE64.encode(blob.as_bytes()) }).to_string(),
        Err(error) => error_json(&error.to_string()),
    }
}

/// Runs a merge entry point: its JSON, with panics caught.
fn merge_entry(name: &str, merge: impl FnOnce() -> Result<String, String>) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(merge));
    to_c(match result {
        Ok(Ok(json)) => json,
        Ok(Err(message)) => error_json(&message),
        Err(_) => error_json(&format!("{name} panicked")),
    })
}

/// The fleet's history merge before a decision: `local_b64` (NULL for a peer this node never
/// met) with the fleet's `shared_b64` copy merged in, and the local dance, as
/// `{"history":"…"}`; `{"error":"…"}` when a blob cannot be read (then decide with the local
/// history as it is). Free the result with [`tlsfallback_string_free`].
///
/// # Safety
///
/// Each argument is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_adopt_shared(
    local_b64: *const c_char,
    shared_b64: *const c_char,
) -> *mut c_char {
    merge_entry("tlsfallback_adopt_shared", || {
        // SAFETY: the caller promises C strings or NULL.
        let local = unsafe { history_arg(local_b64, "local") }?;
        // SAFETY: as above.
        let shared = unsafe { history_arg(shared_b64, "shared") }?.ok_or("shared is NULL")?;
        Ok(merge_json(policy_core::adopt_shared(
            local.as_deref(),
            &shared,
        )))
    })
}

/// The fleet's history merge after a change: the shared copy to write for `local_b64` over the
/// copy `shared_b64` last read (NULL: none), as `{"history":"…"}` (equal to the copy read:
/// nothing to write); `{"error":"…"}` when the local history cannot be read. Free the result
/// with [`tlsfallback_string_free`].
///
/// # Safety
///
/// Each argument is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tlsfallback_blob_to_share(
    local_b64: *const c_char,
    shared_b64: *const c_char,
) -> *mut c_char {
    merge_entry("tlsfallback_blob_to_share", || {
        // SAFETY: the caller promises C strings or NULL.
        let local = unsafe { history_arg(local_b64, "local") }?.ok_or("local is NULL")?;
        // SAFETY: as above.
        let shared = unsafe { history_arg(shared_b64, "shared") }?;
        Ok(merge_json(policy_core::blob_to_share(
            &local,
            shared.as_deref(),
        )))
    })
}

/// How the nodes of a fleet share histories in Redis (`tlsfallback_engine::fleet_protocol`).
#[repr(C)]
pub struct FleetProtocol {
    /// A peer's key is `key_prefix` + peer + `key_suffix`.
    pub key_prefix: *const c_char,
    /// See `key_prefix`.
    pub key_suffix: *const c_char,
    /// The hash field of the copy's version.
    pub version_field: *const c_char,
    /// The hash field of the copy's history blob.
    pub blob_field: *const c_char,
    /// The Lua compare-and-set script.
    pub compare_and_set: *const c_char,
    /// Rounds a write tries before it gives up.
    pub compare_and_set_rounds: u32,
    /// The fewest seconds a copy lives after its last write.
    pub shortest_key_ttl_secs: u64,
}

/// The protocol's strings, kept for the life of the process.
struct Protocol {
    _strings: Vec<CString>,
    c: FleetProtocol,
}

// SAFETY: the pointers point into `_strings`, which is never changed or dropped (a static).
unsafe impl Send for Protocol {}
// SAFETY: as above; nothing is ever written through them.
unsafe impl Sync for Protocol {}

/// The fleet's protocol, a static struct: do not free it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tlsfallback_fleet() -> *const FleetProtocol {
    static PROTOCOL: OnceLock<Protocol> = OnceLock::new();
    let protocol = PROTOCOL.get_or_init(|| {
        let strings: Vec<CString> = [
            fleet_protocol::KEY_PREFIX,
            fleet_protocol::KEY_SUFFIX,
            fleet_protocol::VERSION_FIELD,
            fleet_protocol::BLOB_FIELD,
            fleet_protocol::COMPARE_AND_SET_SCRIPT,
        ]
        .into_iter()
        .map(|text| CString::new(text).unwrap_or_default())
        .collect();
        let c = FleetProtocol {
            key_prefix: strings[0].as_ptr(),
            key_suffix: strings[1].as_ptr(),
            version_field: strings[2].as_ptr(),
            blob_field: strings[3].as_ptr(),
            compare_and_set: strings[4].as_ptr(),
            compare_and_set_rounds: fleet_protocol::CAS_ROUNDS,
            shortest_key_ttl_secs: fleet_protocol::SHORTEST_KEY_TTL.as_secs(),
        };
        Protocol {
            _strings: strings,
            c,
        }
    });
    &protocol.c
}

/// The library's version and the WIT interface it embeds, e.g. `0.1.0 tlsfallback:policy@0.2.0`.
/// A static string: do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn tlsfallback_version() -> *const c_char {
    const VERSION: &CStr = {
        let text = concat!(env!("CARGO_PKG_VERSION"), " tlsfallback:policy@0.2.0\0");
        match CStr::from_bytes_with_nul(text.as_bytes()) {
            Ok(version) => version,
            Err(_) => panic!("the version string has one NUL, at its end"),
        }
    };
    VERSION.as_ptr()
}
