//! The configuration parser: the TOML text of `--config`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotation_ledger::config::Config;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Config::parse(text, "fuzz.toml");
    }
});
