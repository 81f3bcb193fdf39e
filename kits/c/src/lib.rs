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
