//! DANE-TLSA verification (RFC 7672) with OpenSSL's own DANE support.
//!
//! Written by hand because the openssl crate binds none of `SSL_CTX_dane_enable`,
//! `SSL_dane_enable` and `SSL_dane_tlsa_add`; re-implementing TLSA matching in Rust would be the
//! riskier choice. These three calls are the only unsafe code in the host.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};

use foreign_types::ForeignTypeRef as _;
use openssl::ssl::{SslContextBuilder, SslRef};

use super::TlsaRecord;

unsafe extern "C" {
    fn SSL_CTX_dane_enable(ctx: *mut c_void) -> c_int;
    fn SSL_dane_enable(ssl: *mut c_void, basedomain: *const c_char) -> c_int;
    fn SSL_dane_set_flags(ssl: *mut c_void, flags: std::ffi::c_ulong) -> std::ffi::c_ulong;
    fn SSL_dane_tlsa_add(
        ssl: *mut c_void,
        usage: u8,
        selector: u8,
        mtype: u8,
        data: *const u8,
        dlen: usize,
    ) -> c_int;
}

/// Enables DANE on a context (once, before any connection).
pub(super) fn enable_on_context(builder: &mut SslContextBuilder) -> Result<(), String> {
    // SAFETY: the pointer is the live SSL_CTX owned by `builder`.
    let rc = unsafe { SSL_CTX_dane_enable(builder.as_ptr().cast()) };
    if rc > 0 {
        Ok(())
    } else {
        Err("SSL_CTX_dane_enable failed".to_owned())
    }
}

/// `DANE_FLAG_NO_DANE_EE_NAMECHECKS`: RFC 7672 section 3.2.1, a DANE-EE(3) match needs no name
/// match (OpenSSL checks names for it unless told not to).
const DANE_FLAG_NO_DANE_EE_NAMECHECKS: std::ffi::c_ulong = 1;

/// Enables DANE on one connection with the MX host as reference name and adds the records.
/// Returns how many records OpenSSL accepted as usable.
pub(super) fn enable_on_connection(
    ssl: &mut SslRef,
    mx_host: &str,
    records: &[TlsaRecord],
) -> Result<usize, String> {
    let name = CString::new(mx_host).map_err(|_| "the MX host name has a NUL byte".to_owned())?;
    // SAFETY: `ssl` is a live SSL; `name` outlives the call (OpenSSL copies it).
    let rc = unsafe { SSL_dane_enable(ssl.as_ptr().cast(), name.as_ptr()) };
    if rc <= 0 {
        return Err("SSL_dane_enable failed".to_owned());
    }
    // SAFETY: `ssl` is a live SSL with DANE enabled just above.
    unsafe { SSL_dane_set_flags(ssl.as_ptr().cast(), DANE_FLAG_NO_DANE_EE_NAMECHECKS) };
    let mut usable = 0;
    for record in records {
        // SAFETY: `data` points to `data.len()` readable bytes for the duration of the call
        // (OpenSSL copies them).
        let rc = unsafe {
            SSL_dane_tlsa_add(
                ssl.as_ptr().cast(),
                record.usage,
                record.selector,
                record.matching_type,
                record.data.as_ptr(),
                record.data.len(),
            )
        };
        // 0: unusable record (skipped, RFC 7671); negative: malformed.
        if rc > 0 {
            usable += 1;
        }
    }
    Ok(usable)
}
