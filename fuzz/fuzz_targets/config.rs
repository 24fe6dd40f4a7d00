//! Any text as a drctl config file: parsed and validated, every error
//! rendered (file:line:column, hint) — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match drctl_config::parse("fuzz.toml", text, std::path::Path::new("/nonexistent")) {
        Ok(config) => {
            // What the CLI and the API print of a valid config.
            let _ = serde_json::to_string(&config.services);
            let _ = format!("{config:?}");
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
