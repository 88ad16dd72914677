//! The contract of the `ConnectionRegistry` port: [`connection_registry_contract!`] expands
//! to one `#[tokio::test]` per case, given an async fn returning a fresh registry.

use std::sync::Arc;
use std::time::Duration;

use agentwire_auth::{Claims, Role};
use agentwire_realtime::{
    Announce, Connection, ConnectionRegistry, Member, PRESENCE_WINDOW_MS, Subscriber, Subscription,
};
use agentwire_session::{Clock, SystemClock};

use crate::ManualClock;

/// Generates one `#[tokio::test]` per case. `$registry` is an async fn taking the
/// `Arc<ManualClock>` the registry must tell time by and returning a fresh
/// `Arc<dyn ConnectionRegistry>`.
#[macro_export]
macro_rules! connection_registry_contract {
    ($registry:path) => {
        $crate::connection_registry_contract!(@cases $registry;
            a_connection_is_remembered_until_it_disconnects,
            subscribing_twice_subscribes_once,
            unknown_connections_cannot_subscribe,
            disconnect_ends_every_subscription,
            presence_counts_connections_per_user,
            sessions_with_shared_prefixes_stay_apart,
            subscribers_carry_their_token_expiry,
            subscriptions_list_what_a_connection_follows,
            presence_is_announced_once_per_user_while_connected,
            subscribe_cycles_announce_at_most_one_join_and_leave_per_window,
        );
    };
    (@cases $registry:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                $crate::registry::$case($registry(clock.clone()).await, clock).await;
            }
        )*
    };
}

/// A controller's connection, connected now.
pub fn connection(id: &str, user: Option<&str>) -> Connection {
    Connection {
        id: id.to_owned(),
        claims: Claims {
            tenant: "acme".into(),
            sessions: "chat-*".into(),
            role: Role::Controller,
            user: user.map(str::to_owned),
            exp: 4_000_000_000,
        },
        // Now: registries may forget connections older than API Gateway's 2 h limit.
        connected_at_ms: SystemClock.now_ms(),
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn subscriber_ids(r: &dyn ConnectionRegistry, session: &str) -> Vec<String> {
    let subscribers = r.subscribers(session).await.unwrap();
    sorted(subscribers.into_iter().map(|s| s.id).collect())
}

fn changed(announce: Option<Announce>) -> Subscription {
    Subscription {
        changed: true,
        announce,
    }
}

pub async fn a_connection_is_remembered_until_it_disconnects(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    let alice = connection("c-1", Some("alice"));
    r.connect(alice.clone()).await.unwrap();

    assert_eq!(r.get("c-1").await.unwrap(), Some(alice.clone()));
    assert_eq!(r.get("c-2").await.unwrap(), None);
    let gone = r.disconnect("c-1").await.unwrap().expect("was connected");
    assert_eq!(gone.connection, alice);
    assert!(gone.sessions.is_empty());
    assert!(gone.leaves.is_empty());
    assert_eq!(r.get("c-1").await.unwrap(), None);
    assert_eq!(r.disconnect("c-1").await.unwrap(), None);
}

pub async fn subscribing_twice_subscribes_once(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    r.connect(connection("c-1", None)).await.unwrap();
    assert!(r.subscribe("c-1", "acme/chat-1").await.unwrap().changed);
    assert!(!r.subscribe("c-1", "acme/chat-1").await.unwrap().changed);
    assert_eq!(subscriber_ids(r.as_ref(), "acme/chat-1").await, vec!["c-1"]);
    assert!(r.unsubscribe("c-1", "acme/chat-1").await.unwrap().changed);
    assert!(!r.unsubscribe("c-1", "acme/chat-1").await.unwrap().changed);
    assert!(r.subscribers("acme/chat-1").await.unwrap().is_empty());
}

pub async fn unknown_connections_cannot_subscribe(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    assert!(r.subscribe("nobody", "acme/chat-1").await.is_err());
    assert!(r.subscribers("acme/chat-1").await.unwrap().is_empty());
}

pub async fn disconnect_ends_every_subscription(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    r.connect(connection("c-1", Some("alice"))).await.unwrap();
    r.connect(connection("c-2", Some("bob"))).await.unwrap();
    for session in ["acme/chat-1", "acme/chat-2"] {
        r.subscribe("c-1", session).await.unwrap();
        r.subscribe("c-2", session).await.unwrap();
    }
    let gone = r.disconnect("c-1").await.unwrap().expect("was connected");
    assert_eq!(sorted(gone.sessions), vec!["acme/chat-1", "acme/chat-2"]);
    // Alice's only connection went: her leave is announced wherever her join was.
    assert_eq!(sorted(gone.leaves), vec!["acme/chat-1", "acme/chat-2"]);
    for session in ["acme/chat-1", "acme/chat-2"] {
        assert_eq!(subscriber_ids(r.as_ref(), session).await, vec!["c-2"]);
    }
}

pub async fn presence_counts_connections_per_user(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    for (id, user) in [
        ("c-1", Some("alice")),
        ("c-2", Some("alice")),
        ("c-3", Some("bob")),
        ("c-4", None),
    ] {
        r.connect(connection(id, user)).await.unwrap();
        r.subscribe(id, "acme/chat-1").await.unwrap();
    }
    let member = |user: &str, connections| Member {
        user: user.into(),
        connections,
    };
    let mut presence = r.presence("acme/chat-1").await.unwrap();
    presence.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        presence,
        vec![member("alice", 2), member("anonymous", 1), member("bob", 1)]
    );
    assert!(r.presence("acme/chat-2").await.unwrap().is_empty());
}

pub async fn sessions_with_shared_prefixes_stay_apart(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    r.connect(connection("c-1", None)).await.unwrap();
    r.connect(connection("c-2", None)).await.unwrap();
    r.subscribe("c-1", "acme/chat-1").await.unwrap();
    r.subscribe("c-2", "acme/chat-10").await.unwrap();
    assert_eq!(subscriber_ids(r.as_ref(), "acme/chat-1").await, vec!["c-1"]);
    assert_eq!(
        subscriber_ids(r.as_ref(), "acme/chat-10").await,
        vec!["c-2"]
    );
}

/// The fan-out stops pushing at a token's expiry without reading every connection.
pub async fn subscribers_carry_their_token_expiry(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    let mut soon = connection("c-1", Some("alice"));
    soon.claims.exp = SystemClock.now_ms() / 1000 + 2;
    r.connect(soon.clone()).await.unwrap();
    r.subscribe("c-1", "acme/chat-1").await.unwrap();
    assert_eq!(
        r.subscribers("acme/chat-1").await.unwrap(),
        vec![Subscriber {
            id: "c-1".into(),
            token_exp: Some(soon.claims.exp),
        }]
    );
}

/// `pong` reports the tail of every session a connection follows.
pub async fn subscriptions_list_what_a_connection_follows(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    r.connect(connection("c-1", None)).await.unwrap();
    r.connect(connection("c-2", None)).await.unwrap();
    r.subscribe("c-1", "acme/chat-1").await.unwrap();
    r.subscribe("c-1", "acme/chat-2").await.unwrap();
    r.subscribe("c-2", "acme/chat-3").await.unwrap();
    let followed = r.subscriptions("c-1").await.unwrap();
    assert_eq!(sorted(followed), vec!["acme/chat-1", "acme/chat-2"]);
    r.unsubscribe("c-1", "acme/chat-1").await.unwrap();
    assert_eq!(r.subscriptions("c-1").await.unwrap(), vec!["acme/chat-2"]);
    assert!(r.subscriptions("nobody").await.unwrap().is_empty());
}

/// One join when a user's first connection subscribes, one leave when the last one goes;
/// the live presence stays exact in between.
pub async fn presence_is_announced_once_per_user_while_connected(
    r: Arc<dyn ConnectionRegistry>,
    _clock: Arc<ManualClock>,
) {
    let chat = "acme/chat-1";
    for (id, user) in [("c-1", "alice"), ("c-2", "alice"), ("c-3", "bob")] {
        r.connect(connection(id, Some(user))).await.unwrap();
    }
    assert_eq!(
        r.subscribe("c-1", chat).await.unwrap(),
        changed(Some(Announce::Join))
    );
    assert_eq!(r.subscribe("c-2", chat).await.unwrap(), changed(None));
    assert_eq!(
        r.subscribe("c-3", chat).await.unwrap(),
        changed(Some(Announce::Join))
    );
    assert_eq!(r.unsubscribe("c-1", chat).await.unwrap(), changed(None));
    let member = |user: &str, connections| Member {
        user: user.into(),
        connections,
    };
    let mut presence = r.presence(chat).await.unwrap();
    presence.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(presence, vec![member("alice", 1), member("bob", 1)]);
    let gone = r.disconnect("c-2").await.unwrap().expect("was connected");
    assert_eq!(gone.leaves, vec![chat], "alice's last connection left");
    assert_eq!(
        r.unsubscribe("c-3", chat).await.unwrap(),
        changed(Some(Announce::Leave))
    );
    assert!(r.presence(chat).await.unwrap().is_empty());
}

/// A reader cycling subscribe/unsubscribe cannot grow the log: at most one join and one
/// leave per user and session per window, and never a join without its leave.
pub async fn subscribe_cycles_announce_at_most_one_join_and_leave_per_window(
    r: Arc<dyn ConnectionRegistry>,
    clock: Arc<ManualClock>,
) {
    let chat = "acme/chat-1";
    r.connect(connection("c-1", Some("alice"))).await.unwrap();
    let mut announced = Vec::new();
    for _ in 0..100 {
        announced.extend(r.subscribe("c-1", chat).await.unwrap().announce);
        announced.extend(r.unsubscribe("c-1", chat).await.unwrap().announce);
    }
    assert_eq!(announced, vec![Announce::Join, Announce::Leave]);
    // A join suppressed inside the window has no leave either: the log never claims a
    // presence that ended.
    assert_eq!(r.subscribe("c-1", chat).await.unwrap().announce, None);
    let gone = r.disconnect("c-1").await.unwrap().expect("was connected");
    assert!(gone.leaves.is_empty(), "{:?}", gone.leaves);
    assert!(r.presence(chat).await.unwrap().is_empty());
    // Once the window has passed, the user's return is announced again.
    clock.advance(Duration::from_millis(PRESENCE_WINDOW_MS as u64 + 1_000));
    r.connect(connection("c-2", Some("alice"))).await.unwrap();
    assert_eq!(
        r.subscribe("c-2", chat).await.unwrap().announce,
        Some(Announce::Join)
    );
}
