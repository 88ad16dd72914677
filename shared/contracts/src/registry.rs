//! The contract of the `ConnectionRegistry` port: [`connection_registry_contract!`] expands
//! to one `#[tokio::test]` per case, given an async fn returning a fresh registry.

use std::sync::Arc;

use agentwire_auth::{Claims, Role};
use agentwire_realtime::{Connection, ConnectionRegistry, Member};
use agentwire_session::{Clock, SystemClock};

/// Generates one `#[tokio::test]` per case. `$registry` is an async fn returning a fresh
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
        );
    };
    (@cases $registry:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::registry::$case($registry().await).await;
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

pub async fn a_connection_is_remembered_until_it_disconnects(r: Arc<dyn ConnectionRegistry>) {
    let alice = connection("c-1", Some("alice"));
    r.connect(alice.clone()).await.unwrap();

    assert_eq!(r.get("c-1").await.unwrap(), Some(alice.clone()));
    assert_eq!(r.get("c-2").await.unwrap(), None);
    let (gone, sessions) = r.disconnect("c-1").await.unwrap().expect("was connected");
    assert_eq!(gone, alice);
    assert!(sessions.is_empty());
    assert_eq!(r.get("c-1").await.unwrap(), None);
    assert_eq!(r.disconnect("c-1").await.unwrap(), None);
}

pub async fn subscribing_twice_subscribes_once(r: Arc<dyn ConnectionRegistry>) {
    r.connect(connection("c-1", None)).await.unwrap();
    assert!(r.subscribe("c-1", "acme/chat-1").await.unwrap());
    assert!(!r.subscribe("c-1", "acme/chat-1").await.unwrap());
    assert_eq!(r.subscribers("acme/chat-1").await.unwrap(), vec!["c-1"]);
    assert!(r.unsubscribe("c-1", "acme/chat-1").await.unwrap());
    assert!(!r.unsubscribe("c-1", "acme/chat-1").await.unwrap());
    assert!(r.subscribers("acme/chat-1").await.unwrap().is_empty());
}

pub async fn unknown_connections_cannot_subscribe(r: Arc<dyn ConnectionRegistry>) {
    assert!(r.subscribe("nobody", "acme/chat-1").await.is_err());
    assert!(r.subscribers("acme/chat-1").await.unwrap().is_empty());
}

pub async fn disconnect_ends_every_subscription(r: Arc<dyn ConnectionRegistry>) {
    r.connect(connection("c-1", Some("alice"))).await.unwrap();
    r.connect(connection("c-2", Some("bob"))).await.unwrap();
    for session in ["acme/chat-1", "acme/chat-2"] {
        r.subscribe("c-1", session).await.unwrap();
        r.subscribe("c-2", session).await.unwrap();
    }
    let (_, sessions) = r.disconnect("c-1").await.unwrap().expect("was connected");
    assert_eq!(sorted(sessions), vec!["acme/chat-1", "acme/chat-2"]);
    for session in ["acme/chat-1", "acme/chat-2"] {
        assert_eq!(r.subscribers(session).await.unwrap(), vec!["c-2"]);
    }
}

pub async fn presence_counts_connections_per_user(r: Arc<dyn ConnectionRegistry>) {
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

pub async fn sessions_with_shared_prefixes_stay_apart(r: Arc<dyn ConnectionRegistry>) {
    r.connect(connection("c-1", None)).await.unwrap();
    r.connect(connection("c-2", None)).await.unwrap();
    r.subscribe("c-1", "acme/chat-1").await.unwrap();
    r.subscribe("c-2", "acme/chat-10").await.unwrap();
    assert_eq!(r.subscribers("acme/chat-1").await.unwrap(), vec!["c-1"]);
    assert_eq!(r.subscribers("acme/chat-10").await.unwrap(), vec!["c-2"]);
}
