//! Any bytes as a backup read back from object storage (where anyone with
//! write access to the bucket could have put them): a manifest, and — after
//! the first NUL byte, which JSON never holds — the bytes of its data
//! object. The manifest is decoded and checked; the object goes through the
//! decryptor, zstd and tar with and without a key; and both go through
//! `verify_backup` from a directory store, the manifest's digests fixed up
//! to match the object so verification reaches the decryptor. Never a panic.
#![no_main]

use std::sync::OnceLock;

use drctl_backup::{
    check_object_contents, verify_backup, BackupKey, Expected, Manifest, ObjectStore, SealedObject,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const SERVICE: &str = "catalog";
const BACKUP_ID: &str = "20261124T024123Z-43e364";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: ObjectStore,
    key: BackupKey,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a scratch directory");
        let store = runtime
            .block_on(ObjectStore::local(dir.path()))
            .expect("a directory store");
        Fixture {
            runtime,
            store,
            key: BackupKey::from_hex(&"3c".repeat(32)).expect("a key"),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (manifest_bytes, object) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(mut manifest) = serde_json::from_slice::<Manifest>(manifest_bytes) else {
        return;
    };
    let _ = manifest.check();
    if object.is_empty() {
        return;
    }
    let f = fixture();
    let sealed = SealedObject::new(BACKUP_ID, "base.tar.zst");
    let _ = check_object_contents(object, Some(&f.key), &sealed);
    let _ = check_object_contents(object, None, &sealed);

    manifest.backup_id = BACKUP_ID.into();
    manifest.service = SERVICE.into();
    if let Some(o) = manifest.objects.first_mut() {
        o.key = "base.tar.zst".into();
        o.size = object.len() as u64;
        o.sha256 = hex::encode(Sha256::digest(object));
    }
    let prefix = format!("{SERVICE}/{BACKUP_ID}/");
    f.runtime.block_on(async {
        let written = async {
            f.store
                .put(&format!("{prefix}base.tar.zst"), object.to_vec())
                .await?;
            f.store
                .put(
                    &format!("{prefix}manifest.json"),
                    serde_json::to_vec(&manifest).expect("a manifest serializes"),
                )
                .await
        };
        if written.await.is_err() {
            return;
        }
        for key in [None, Some(f.key.clone())] {
            let expected = Expected {
                manifest: None,
                key,
            };
            let _ = verify_backup(&f.store, SERVICE, BACKUP_ID, &expected).await;
        }
    });
});
