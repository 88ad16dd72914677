//! The contract of the `SubscriptionStore` port: [`subscription_store_contract!`] expands to
//! one `#[tokio::test]` per case, given an async fn returning a fresh, empty store and
//! whatever must outlive it.
//!
//! The property the dispatch service leans on: a write conditional on a version succeeds
//! for exactly one of any number of writers that read that version.

use std::sync::Arc;

use agentwire_dispatch::model::{Spec, Tails};
use agentwire_dispatch::{Subscription, SubscriptionStore, Targets};
use agentwire_session::Offset;

#[macro_export]
macro_rules! subscription_store_contract {
    ($subject:path) => {
        $crate::subscription_store_contract!(@cases $subject;
            a_subscription_is_created_once_and_read_back,
            a_write_on_a_stale_version_is_refused,
            of_concurrent_writers_on_one_version_exactly_one_wins,
            tenants_are_listed_apart_and_delete_is_final,
            a_list_after_a_write_shows_it_even_among_concurrent_lists,
            a_write_prepared_before_a_delete_never_lands_on_the_re_created_one,
            due_lists_only_leases_and_retries_that_fell_due,
        );
    };
    (@cases $subject:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _keep) = $subject().await;
                $crate::subscriptions::$case(store).await;
            }
        )*
    };
}

/// A pull-wake subscription of `tenant` named `id`, as every case uses.
pub fn subscription(tenant: &str, id: &str) -> Subscription {
    let body = br#"{"type": "pull-wake", "pattern": "chat-*", "wake_stream": "wake/pool", "lease_ttl_ms": 1000}"#;
    let spec = Spec::parse(body, Targets::Public).expect("a valid spec");
    let tails: Tails = [("chat-1".to_owned(), Offset(3))].into();
    Subscription::new(tenant, id, spec, "https://streams.example", &tails, 1_000)
}

pub async fn a_subscription_is_created_once_and_read_back(store: Arc<dyn SubscriptionStore>) {
    let sub = subscription("acme", "pool");
    assert!(store.get("acme", "pool").await.unwrap().is_none());
    assert!(store.put(&sub, None).await.unwrap());
    assert!(!store.put(&sub, None).await.unwrap(), "created once");
    let (read, version) = store.get("acme", "pool").await.unwrap().expect("stored");
    assert_eq!(read, sub);
    assert_eq!(version, 1);
}

pub async fn a_write_on_a_stale_version_is_refused(store: Arc<dyn SubscriptionStore>) {
    let mut sub = subscription("acme", "pool");
    store.put(&sub, None).await.unwrap();
    sub.generation = 5;
    assert!(store.put(&sub, Some(1)).await.unwrap());
    let mut stale = sub.clone();
    stale.generation = 9;
    assert!(
        !store.put(&stale, Some(1)).await.unwrap(),
        "version 1 is gone"
    );
    let (read, version) = store.get("acme", "pool").await.unwrap().unwrap();
    assert_eq!((read.generation, version), (5, 2));
}

pub async fn of_concurrent_writers_on_one_version_exactly_one_wins(
    store: Arc<dyn SubscriptionStore>,
) {
    store
        .put(&subscription("acme", "pool"), None)
        .await
        .unwrap();
    let mut writers = Vec::new();
    for n in 0..16u64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut sub = subscription("acme", "pool");
            sub.generation = n + 1;
            store.put(&sub, Some(1)).await.unwrap()
        }));
    }
    let mut won = 0;
    for w in writers {
        won += usize::from(w.await.unwrap());
    }
    assert_eq!(won, 1);
    let (_, version) = store.get("acme", "pool").await.unwrap().unwrap();
    assert_eq!(version, 2);
}

pub async fn tenants_are_listed_apart_and_delete_is_final(store: Arc<dyn SubscriptionStore>) {
    store.put(&subscription("acme", "a"), None).await.unwrap();
    store.put(&subscription("acme", "b"), None).await.unwrap();
    store.put(&subscription("acme-2", "a"), None).await.unwrap();
    let mut ids: Vec<String> = store
        .list("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    assert!(store.delete("acme", "a").await.unwrap());
    assert!(!store.delete("acme", "a").await.unwrap());
    assert!(store.get("acme", "a").await.unwrap().is_none());
    assert!(store.get("acme-2", "a").await.unwrap().is_some());
}

/// Lists may be served from memory (dispatch lists on every append), but never one older
/// than a write that returned before the list began.
pub async fn a_list_after_a_write_shows_it_even_among_concurrent_lists(
    store: Arc<dyn SubscriptionStore>,
) {
    assert!(store.list("acme").await.unwrap().is_empty());
    let mut writers = Vec::new();
    for n in 0..8u64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let id = format!("s{n}");
            let listed = |subs: Vec<Subscription>| subs.into_iter().find(|s| s.id == id);
            let mut sub = subscription("acme", &id);
            assert!(store.list("acme").await.unwrap().iter().all(|s| s.id != id));
            assert!(store.put(&sub, None).await.unwrap());
            let seen = listed(store.list("acme").await.unwrap());
            assert_eq!(
                seen.map(|s| s.generation),
                Some(sub.generation),
                "{id} created"
            );
            sub.generation = 10 + n;
            assert!(store.put(&sub, Some(1)).await.unwrap());
            let seen = listed(store.list("acme").await.unwrap());
            assert_eq!(seen.map(|s| s.generation), Some(10 + n), "{id} updated");
            assert!(store.delete("acme", &sub.id).await.unwrap());
            assert!(
                listed(store.list("acme").await.unwrap()).is_none(),
                "{id} deleted"
            );
        }));
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    assert!(store.list("acme").await.unwrap().is_empty());
}

pub async fn a_write_prepared_before_a_delete_never_lands_on_the_re_created_one(
    store: Arc<dyn SubscriptionStore>,
) {
    let old = subscription("acme", "pool");
    store.put(&old, None).await.unwrap();
    let (loaded, version) = store.get("acme", "pool").await.unwrap().unwrap();
    assert!(store.delete("acme", "pool").await.unwrap());
    let mut new = subscription("acme", "pool");
    new.generation = 7;
    assert!(store.put(&new, None).await.unwrap(), "re-created");
    let mut stale = loaded;
    stale.generation = 99;
    assert!(
        !store.put(&stale, Some(version)).await.unwrap(),
        "the old version is gone for good"
    );
    let (read, newer) = store.get("acme", "pool").await.unwrap().unwrap();
    assert_eq!(read, new);
    assert!(
        newer > version + 1,
        "versions never repeat: {newer} after {version}"
    );
}

pub async fn due_lists_only_leases_and_retries_that_fell_due(store: Arc<dyn SubscriptionStore>) {
    let idle = subscription("acme", "idle");
    store.put(&idle, None).await.unwrap();
    let mut leased = subscription("acme", "leased");
    let tails: Tails = [("chat-1".to_owned(), Offset(4))].into();
    leased.claim("w1", &tails, 10_000).expect("a claim");
    store.put(&leased, None).await.unwrap();
    assert_eq!(store.due(10_500).await.unwrap(), []);
    assert_eq!(
        store.due(11_001).await.unwrap(),
        [("acme".to_owned(), "leased".to_owned())]
    );
    // A webhook retry falls due at its time, then not again until rescheduled.
    let body = br#"{"type": "webhook", "pattern": "chat-*", "webhook": {"url": "https://hooks.example/h"}}"#;
    let spec = Spec::parse(body, Targets::Public).unwrap();
    let linked: Tails = [("chat-1".to_owned(), Offset(3))].into();
    let mut hook = Subscription::new("acme", "hook", spec, "https://s", &linked, 0);
    let agentwire_dispatch::model::Effect::Deliver { wake_id, .. } =
        hook.wake_if_idle(&tails, 20_000)
    else {
        panic!("a wake");
    };
    hook.delivered(
        &wake_id,
        agentwire_dispatch::model::Delivered::Failed,
        &tails,
        20_000,
    );
    let at = hook.retry.as_ref().unwrap().next_attempt_at_ms;
    store.put(&hook, None).await.unwrap();
    assert!(
        !store
            .due(at - 1)
            .await
            .unwrap()
            .contains(&("acme".to_owned(), "hook".to_owned()))
    );
    assert!(
        store
            .due(at)
            .await
            .unwrap()
            .contains(&("acme".to_owned(), "hook".to_owned()))
    );
}
