//! Error descriptions and versions: functions any thread may call.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::catch_unwind;
use std::sync::OnceLock;

use super::types::*;

/// A static, NUL-terminated description of `code`: a negative errno as the
/// functions here return it (a positive errno works too), EVL_EPANIC, an
/// EVL_ETLS_* code (evl_tls_error_reason tells a stream's details), or 0.
/// Never NULL, for any int.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_strerror(code: c_int) -> *const c_char {
    static MESSAGES: OnceLock<Vec<CString>> = OnceLock::new();
    const UNKNOWN: &CStr = c"Unknown error";
    let result = catch_unwind(|| {
        let messages = MESSAGES.get_or_init(|| (0..134).map(errno_message).collect());
        if let Some(text) = crate::tls::describe(code.saturating_abs()) {
            return text.as_ptr();
        }
        match code {
            0 => c"Success".as_ptr(),
            EVL_EPANIC => c"Rust panic caught inside evloop".as_ptr(),
            _ => match messages.get(code.unsigned_abs() as usize) {
                Some(message) => message.as_ptr(),
                None => UNKNOWN.as_ptr(),
            },
        }
    });
    result.unwrap_or(UNKNOWN.as_ptr())
}

fn errno_message(errno: i32) -> CString {
    // "Invalid argument (os error 22)" -> "Invalid argument"
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or("Unknown error");
    CString::new(text).unwrap_or_else(|_| c"Unknown error".to_owned())
}

/// The library's version, "MAJOR.MINOR.PATCH" (static, never NULL).
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version contains NUL"),
        };
    VERSION.as_ptr()
}

/// The ABI version the library implements; compare with EVL_ABI_VERSION.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_abi_version() -> u32 {
    EVL_ABI_VERSION
}
