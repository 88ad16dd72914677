//! The contract of the `BlobStore` port (claim checks): [`blob_store_contract!`] expands to
//! one `#[tokio::test]` per case, given an async fn returning a fresh, empty store.

use agentwire_session::BlobStore;
use bytes::Bytes;

use crate::binary;

/// Generates one `#[tokio::test]` per case. `$store` is an async fn returning a fresh
/// `Arc<dyn BlobStore>`.
#[macro_export]
macro_rules! blob_store_contract {
    ($store:path) => {
        $crate::blob_store_contract!(@cases $store;
            a_blob_is_kept_until_deleted,
            a_missing_blob_is_an_error,
            deleting_a_missing_blob_succeeds,
            large_blobs_round_trip_byte_exactly,
        );
    };
    (@cases $store:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::blobs::$case(&*$store().await).await;
            }
        )*
    };
}

pub async fn a_blob_is_kept_until_deleted(store: &dyn BlobStore) {
    let (a, b) = (binary(1000, 1), binary(1000, 2));
    store.put("blobs/acme/a", a.clone()).await.expect("put a");
    store.put("blobs/acme/b", b.clone()).await.expect("put b");
    assert_eq!(store.get("blobs/acme/a").await.expect("get a"), a);
    store.delete("blobs/acme/a").await.expect("delete a");
    assert!(store.get("blobs/acme/a").await.is_err(), "a deleted blob");
    assert_eq!(
        store.get("blobs/acme/b").await.expect("get b"),
        b,
        "deleting one blob leaves the others"
    );
}

/// The log holds a claim check only for a blob it stored: one missing is an error, never
/// an empty payload.
pub async fn a_missing_blob_is_an_error(store: &dyn BlobStore) {
    store
        .put("blobs/acme/present", Bytes::from_static(b"x"))
        .await
        .expect("put");
    for missing in [
        "blobs/acme/absent",
        "blobs/acme/present/x",
        "blobs/acme/pres",
    ] {
        assert!(store.get(missing).await.is_err(), "{missing}");
    }
}

/// Removal is idempotent, so a cleanup that is retried (or races another) succeeds.
pub async fn deleting_a_missing_blob_succeeds(store: &dyn BlobStore) {
    store
        .delete("blobs/acme/never")
        .await
        .expect("never written");
    store
        .put("blobs/acme/once", Bytes::from_static(b"x"))
        .await
        .expect("put");
    store.delete("blobs/acme/once").await.expect("delete");
    store.delete("blobs/acme/once").await.expect("delete again");
}

/// Blobs are what was too large for the log's items: megabytes, any bytes.
pub async fn large_blobs_round_trip_byte_exactly(store: &dyn BlobStore) {
    for (key, data) in [
        ("blobs/acme/mib", binary(1024 * 1024, 3)),
        ("blobs/acme/odd", binary(1024 * 1024 + 4099, 4)),
    ] {
        store.put(key, data.clone()).await.expect("put");
        let read = store.get(key).await.expect("get");
        assert!(
            read == data,
            "{key}: {} bytes back for {}",
            read.len(),
            data.len()
        );
    }
}
