//! The contract of the `ActivityIndex` port: [`activity_index_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a fresh, empty index and whatever
//! must outlive it.

use agentwire_trace::ActivityIndex;

/// Generates one `#[tokio::test]` per case. `$index` is an async fn returning
/// `(Arc<dyn ActivityIndex>, keep)`, where `keep` lives until the case ends.
#[macro_export]
macro_rules! activity_index_contract {
    ($index:path) => {
        $crate::activity_index_contract!(@cases $index;
            sessions_are_idle_once_their_last_activity_is_old_enough,
            the_latest_activity_wins,
            archiving_forgets_only_activity_up_to_its_time,
        );
    };
    (@cases $index:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (index, _keep) = $index().await;
                $crate::activity::$case(&*index).await;
            }
        )*
    };
}

async fn idle(index: &dyn ActivityIndex, before_ms: i64) -> Vec<(String, i64)> {
    let mut due = index.idle_since(before_ms).await.expect("idle_since");
    due.sort();
    due
}

async fn touch(index: &dyn ActivityIndex, session: &str, at_ms: i64) {
    index.touch(session, at_ms).await.expect("touch");
}

pub async fn sessions_are_idle_once_their_last_activity_is_old_enough(index: &dyn ActivityIndex) {
    assert_eq!(idle(index, i64::MAX).await, vec![], "an empty index");
    touch(index, "acme/a", 1_000).await;
    touch(index, "acme/b", 2_000).await;
    assert_eq!(idle(index, 1_000).await, vec![], "strictly before");
    assert_eq!(idle(index, 1_001).await, vec![("acme/a".into(), 1_000)]);
    assert_eq!(
        idle(index, 5_000).await,
        vec![("acme/a".into(), 1_000), ("acme/b".into(), 2_000)]
    );
}

pub async fn the_latest_activity_wins(index: &dyn ActivityIndex) {
    touch(index, "acme/a", 2_000).await;
    // An older time (a retried, earlier batch) does not move it back.
    touch(index, "acme/a", 1_000).await;
    assert_eq!(idle(index, 5_000).await, vec![("acme/a".into(), 2_000)]);
    touch(index, "acme/a", 3_000).await;
    assert_eq!(idle(index, 2_500).await, vec![], "active again at 3000");
    assert_eq!(idle(index, 5_000).await, vec![("acme/a".into(), 3_000)]);
}

pub async fn archiving_forgets_only_activity_up_to_its_time(index: &dyn ActivityIndex) {
    touch(index, "acme/a", 1_000).await;
    touch(index, "acme/b", 1_000).await;
    index.archived("acme/a", 1_000).await.expect("archived");
    assert_eq!(idle(index, 5_000).await, vec![("acme/b".into(), 1_000)]);
    // Activity after the archive began stays due for the next sweep.
    touch(index, "acme/b", 3_000).await;
    index.archived("acme/b", 1_000).await.expect("archived");
    assert_eq!(idle(index, 5_000).await, vec![("acme/b".into(), 3_000)]);
    // Forgetting a session that is not there succeeds.
    index
        .archived("acme/none", i64::MAX)
        .await
        .expect("archived");
}
