//! An agent's value decoded for display and template data: any bytes give
//! a value or an error, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = ensemble::context::decode_value(data) {
        // What the CLI prints must serialise too.
        let _ = value.to_string();
    }
});
