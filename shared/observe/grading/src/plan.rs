//! Turning a list of traces into a queue's items: who grades how many of each.

use std::collections::BTreeSet;

use crate::queue::{MAX_ITEMS, QueueItem, QueueSpec};

/// FNV-1a, 64 bits, then MurmurHash3's finalizer (FNV alone barely mixes the last bytes,
/// so trace ids differing only at the end would land side by side): a hash that never
/// changes between builds or platforms, so the same traces are shared on every machine
/// and after every upgrade.
pub(crate) fn stable_hash(text: &str) -> u64 {
    let mut hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The items of a queue over `traces` (`(trace_id, session)`), positions `0..` in the
/// order given. A repeated trace id keeps its first place only, and the list stops at
/// [`MAX_ITEMS`] items (callers refusing longer lists check before). The share
/// `spec.shared_share` of the items (rounded to the nearest whole item) gets a slot for
/// every grader, for agreement; the rest get `spec.per_item` slots. Which items are shared
/// is decided by a stable hash of their trace ids (the lowest hashes), not by position, so
/// shared items are spread over the queue and the same traces give the same plan.
pub fn plan_items(spec: &QueueSpec, traces: &[(String, String)]) -> Vec<QueueItem> {
    let mut seen = BTreeSet::new();
    let chosen: Vec<&(String, String)> = traces
        .iter()
        .filter(|(trace_id, _)| seen.insert(trace_id.as_str()))
        .take(MAX_ITEMS)
        .collect();
    let share = if spec.shared_share.is_finite() {
        spec.shared_share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let shared_count = (share * chosen.len() as f64).round() as usize;
    let mut by_hash: Vec<usize> = (0..chosen.len()).collect();
    by_hash.sort_by_key(|&i| (stable_hash(&chosen[i].0), chosen[i].0.as_str()));
    let shared: BTreeSet<usize> = by_hash.into_iter().take(shared_count).collect();
    let everyone = u32::try_from(spec.graders.len()).unwrap_or(u32::MAX);
    chosen
        .iter()
        .enumerate()
        .map(|(i, (trace_id, session))| QueueItem {
            trace_id: trace_id.clone(),
            session: session.clone(),
            position: i as u32,
            slots: if shared.contains(&i) {
                everyone.max(spec.per_item)
            } else {
                spec.per_item
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::DEFAULT_LEASE_MS;
    use crate::rubric::RubricRef;

    fn spec(share: f64) -> QueueSpec {
        QueueSpec {
            name: "q".into(),
            title: String::new(),
            rubric: RubricRef {
                name: "r".into(),
                version: 1,
            },
            graders: vec!["ann".into(), "bob".into(), "cat".into(), "dee".into()],
            per_item: 2,
            shared_share: share,
            blind: false,
            deadline_ms: None,
            lease_ms: DEFAULT_LEASE_MS,
            adjudication: None,
            source: serde_json::Value::Null,
            created_ms: 0,
        }
    }

    fn traces(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{i:032x}"), format!("session-{i}")))
            .collect()
    }

    fn shared(items: &[QueueItem]) -> BTreeSet<String> {
        items
            .iter()
            .filter(|i| i.slots == 4)
            .map(|i| i.trace_id.clone())
            .collect()
    }

    #[test]
    fn positions_follow_the_given_order_and_repeats_keep_their_first_place() {
        let mut given = traces(3);
        given.reverse();
        given.push((given[0].0.clone(), "another session".into()));
        let items = plan_items(&spec(0.0), &given);
        let got: Vec<(String, String, u32, u32)> = items
            .into_iter()
            .map(|i| (i.trace_id, i.session, i.position, i.slots))
            .collect();
        let want: Vec<(String, String, u32, u32)> = [2usize, 1, 0]
            .iter()
            .enumerate()
            .map(|(p, &i)| (format!("{i:032x}"), format!("session-{i}"), p as u32, 2))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_share_goes_to_every_grader_chosen_by_trace_hash() {
        let items = plan_items(&spec(0.25), &traces(100));
        let chosen = shared(&items);
        assert_eq!(chosen.len(), 25, "a quarter of 100");
        assert!(
            items.iter().all(|i| i.slots == 4 || i.slots == 2),
            "the rest get per_item"
        );
        // Not simply the first items: spread over the queue.
        let positions: Vec<u32> = items
            .iter()
            .filter(|i| i.slots == 4)
            .map(|i| i.position)
            .collect();
        assert!(positions.iter().any(|&p| p >= 50), "{positions:?}");
        assert!(positions.iter().any(|&p| p < 25), "{positions:?}");
        // The same traces in another order share the same ones.
        let mut reversed = traces(100);
        reversed.reverse();
        assert_eq!(shared(&plan_items(&spec(0.25), &reversed)), chosen);
        // Rounded to the nearest item; none at 0, all at 1.
        assert_eq!(shared(&plan_items(&spec(0.25), &traces(10))).len(), 3);
        assert!(shared(&plan_items(&spec(0.0), &traces(10))).is_empty());
        assert_eq!(shared(&plan_items(&spec(1.0), &traces(10))).len(), 10);
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned: a changed hash would reshuffle which traces existing plans share.
        assert_eq!(stable_hash("a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(stable_hash(""), 0xefd0_1f60_ba99_2926);
    }

    #[test]
    fn a_plan_stops_at_max_items() {
        let items = plan_items(&spec(0.0), &traces(MAX_ITEMS + 5));
        assert_eq!(items.len(), MAX_ITEMS);
        assert_eq!(items.last().map(|i| i.position), Some(MAX_ITEMS as u32 - 1));
    }
}
