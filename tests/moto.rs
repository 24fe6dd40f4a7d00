//! The object-storage and DNS test harness: `moto_server` serves S3 and
//! Route 53 on loopback for the backup and failover tests. This proves the
//! harness itself (installed by `tests/run.sh`, started per test, answering
//! both APIs) so that later tests can rely on it.

use drctl_tests::{moto_auth, moto_server};

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
