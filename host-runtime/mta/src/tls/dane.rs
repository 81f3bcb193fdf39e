//! DANE-TLSA verification (RFC 7672) with OpenSSL's own DANE support.
//!
//! Written by hand because the openssl crate binds none of `SSL_CTX_dane_enable`,
//! `SSL_dane_enable` and `SSL_dane_tlsa_add`; re-implementing TLSA matching in Rust would be the
//! riskier choice. These calls are the only unsafe code in the host.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};

use foreign_types::ForeignTypeRef as _;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslRef};

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
/// Returns how many records OpenSSL accepted as usable: with none, OpenSSL would verify the
/// peer against the CA roots instead, so the caller must not go on (RFC 7672 section 2.2).
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
        if add_record(ssl, record)? {
            usable += 1;
        }
    }
    Ok(usable)
}

/// Adds one record to a connection with DANE enabled: whether OpenSSL accepted it as usable.
/// `SSL_dane_tlsa_add` returns 1 for a usable record, 0 for one it cannot use (an unknown
/// usage, a digest of the wrong length, data that is no certificate or key: RFC 7671 "unusable",
/// skipped), and a negative value on an internal error.
fn add_record(ssl: &mut SslRef, record: &TlsaRecord) -> Result<bool, String> {
    // SAFETY: `ssl` is a live SSL with DANE enabled (both callers enable it first); `data`
    // points to `data.len()` readable bytes for the duration of the call (OpenSSL copies them).
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
    if rc < 0 {
        return Err(format!(
            "OpenSSL failed to add the TLSA record {} {} {}",
            record.usage, record.selector, record.matching_type
        ));
    }
    Ok(rc > 0)
}

/// The records OpenSSL accepts as usable, tried on a throw-away connection: what decides
/// whether the TLSA RRset is usable at all, before any delivery.
pub(super) fn accepted(records: &[TlsaRecord]) -> Result<Vec<TlsaRecord>, String> {
    let openssl = |e: openssl::error::ErrorStack| format!("OpenSSL set-up for DANE: {e}");
    let mut builder = SslContext::builder(SslMethod::tls_client()).map_err(openssl)?;
    enable_on_context(&mut builder)?;
    let context = builder.build();
    let mut ssl = Ssl::new(&context).map_err(openssl)?;
    enable_on_connection(&mut ssl, "tlsa-probe.invalid", &[])?;
    let mut usable = Vec::new();
    for record in records {
        if add_record(&mut ssl, record)? {
            usable.push(record.clone());
        }
    }
    Ok(usable)
}
