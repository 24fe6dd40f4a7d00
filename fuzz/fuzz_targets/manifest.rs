//! Any bytes as a backup manifest read back from object storage (where
//! anyone with write access to the bucket could have put them): decoded
//! and checked — never a panic.
#![no_main]

use drctl_backup::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = m.check();
    }
});
