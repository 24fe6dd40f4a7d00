//! The object-storage and DNS test harness: `moto_server` serves S3 and
//! Route 53 on loopback for the backup and failover tests. This proves the
//! harness itself (installed by `tests/run.sh`, started per test, answering
//! both APIs) so that later tests can rely on it; and streamed multipart
//! uploads against S3's limit of 10,000 parts.

use drctl_backup::{ObjectStore, MAX_PARTS};
use drctl_tests::{moto_auth, moto_server, moto_server_with};

#[tokio::test]
async fn moto_serves_s3_and_route53_on_loopback() {
    let moto = moto_server().await;
    let client = reqwest::Client::new();

    let created = client
        .put(format!("{}/drctl-harness", moto.endpoint))
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .expect("S3 CreateBucket");
    assert!(created.status().is_success(), "{}", created.status());
    let put = client
        .put(format!("{}/drctl-harness/hello.txt", moto.endpoint))
        .body("hello")
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .expect("S3 PutObject");
    assert!(put.status().is_success());
    let got = client
        .get(format!("{}/drctl-harness/hello.txt", moto.endpoint))
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "hello");

    let zones = client
        .get(format!("{}/2013-04-01/hostedzone", moto.endpoint))
        .header("authorization", moto_auth("route53"))
        .send()
        .await
        .expect("Route 53 ListHostedZones");
    assert!(zones.status().is_success(), "{}", zones.status());
    assert!(zones
        .text()
        .await
        .unwrap()
        .contains("ListHostedZonesResponse"));
}

/// Streamed uploads do not know their size up front. With a fixed part
/// size, an object of more than 10,000 parts (78 GiB in 8 MiB parts) failed
/// at part 10,001; parts now grow as they accumulate. The same limit is
/// crossed here with 1 KiB initial parts (moto is told to accept parts
/// that small; it refuses part numbers above 10,000 as S3 does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_ten_thousand_initial_parts_completes() {
    const INITIAL: usize = 1024;
    let moto = moto_server_with(&[("S3_UPLOAD_PART_MIN_SIZE", &INITIAL.to_string())]).await;
    let store = ObjectStore::s3(moto.s3_location("drctl-parts", "backups/"))
        .await
        .expect("an S3 store")
        .with_initial_part_size(INITIAL);
    store.ensure_bucket().await.expect("create the bucket");

    let len = (MAX_PARTS + 1) * INITIAL + 17;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let key = "catalog/big/base.tar.zst";
    let mut upload = store.begin_upload(key).await.unwrap();
    for chunk in data.chunks(64 * 1024) {
        upload.write(chunk).await.expect("a part uploads");
    }
    assert_eq!(
        upload.finish().await.expect("the upload completes"),
        len as u64
    );

    assert!(
        store.get(key).await.unwrap() == data,
        "the object reads back whole"
    );
    // A multipart object's ETag ends in `-` and its number of parts.
    let head = reqwest::Client::new()
        .head(format!("{}/drctl-parts/backups/{key}", moto.endpoint))
        .header("authorization", moto_auth("s3"))
        .send()
        .await
        .unwrap();
    let etag = head.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let parts: usize = etag
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a multipart ETag: {etag}"));
    assert!(parts <= MAX_PARTS && parts > 1000, "{parts} parts");
}
