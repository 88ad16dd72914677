//! The contract of the `GradingStore` port: [`grading_store_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a fresh, empty store and whatever
//! must outlive it.
//!
//! Time is whatever the cases pass as `now_ms` (the port reads no clock), so leases and
//! deadlines are tested by passing later times; nothing sleeps.

use std::collections::BTreeSet;
use std::sync::Arc;

use agentwire_grading::{
    Answer, Claim, Criterion, Draft, Grade, GradingError, GradingStore, ItemState, QueueItem,
    QueueSpec, Rubric, RubricRef, Scale, SlotState,
};

/// Generates one `#[tokio::test]` per case (on a multi-threaded runtime, so concurrent
/// claims really run at once). `$subject` is an async fn returning
/// `(Arc<dyn GradingStore>, keep)`, where `keep` lives until the case ends.
#[macro_export]
macro_rules! grading_store_contract {
    ($subject:path) => {
        $crate::grading_store_contract!(@cases $subject;
            rubric_versions_are_immutable_idempotent_and_the_latest_is_the_highest,
            queue_names_conflict_unless_the_spec_is_the_same_and_a_retry_is_safe,
            tenants_are_isolated,
            claims_take_items_in_position_order,
            a_live_claim_is_resumed_first_and_renewed,
            a_lapsed_claim_is_resumed_unless_someone_else_took_it,
            a_lapsed_claim_is_resumed_after_the_deadline,
            a_grader_never_gets_an_item_twice,
            two_graders_never_hold_the_same_slot,
            concurrent_claims_on_one_slot_have_exactly_one_winner,
            an_expired_lease_frees_the_slot_for_another_grader,
            only_the_queues_graders_may_claim,
            no_new_claims_after_the_deadline_but_resume_and_submit_work,
            claim_is_none_when_nothing_is_left,
            submit_is_accepted_while_held_and_only_once,
            submit_is_accepted_after_expiry_if_no_one_retook_the_slot,
            submit_after_the_slot_was_retaken_is_not_held,
            submit_needs_a_claim_and_a_known_queue_and_item,
            submit_deletes_the_draft,
            drafts_are_replaced_and_need_a_claim,
            a_draft_saved_after_submit_is_refused_and_not_kept,
            grades_are_listed_by_position_then_grader,
            add_items_skips_known_traces_and_needs_the_queue,
            items_show_slot_states_and_who_saw_them,
        );
    };
    (@cases $subject:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _keep) = $subject().await;
                $crate::grading::$case(store).await;
            }
        )*
    };
}

/// Times: every case starts here; leases are a minute.
const T0: i64 = 1_700_000_000_000;
const LEASE: i64 = 60_000;

fn trace(i: usize) -> String {
    format!("{:032x}", 0xabc0_0000 + i)
}

fn rubric(name: &str, version: u32) -> Rubric {
    Rubric {
        name: name.to_owned(),
        version,
        title: format!("{name} v{version}"),
        criteria: vec![
            Criterion {
                key: "correct".into(),
                title: "Is the answer correct?".into(),
                guidance: String::new(),
                scale: Scale::PassFail,
                justification_required: true,
                scorers: Vec::new(),
            },
            Criterion {
                key: "clarity".into(),
                title: "How clear is it?".into(),
                guidance: "1 is unreadable, 5 is crisp".into(),
                scale: Scale::Ordinal {
                    anchors: (1..=5).map(|p| format!("point {p}")).collect(),
                },
                justification_required: false,
                scorers: Vec::new(),
            },
        ],
    }
}

fn spec(name: &str, graders: &[&str], per_item: u32) -> QueueSpec {
    QueueSpec {
        name: name.to_owned(),
        title: format!("queue {name}"),
        rubric: RubricRef {
            name: "quality".into(),
            version: 1,
        },
        graders: graders.iter().map(|g| g.to_string()).collect(),
        per_item,
        shared_share: 0.25,
        blind: false,
        deadline_ms: None,
        lease_ms: LEASE,
        adjudication: None,
        source: serde_json::json!({"traces": "explicit"}),
        created_ms: T0 - 1,
    }
}

/// Items `from..to`, positions equal to the index, `slots` each.
fn items(from: usize, to: usize, slots: u32) -> Vec<QueueItem> {
    (from..to)
        .map(|i| QueueItem {
            trace_id: trace(i),
            session: format!("session-{i}"),
            position: i as u32,
            slots,
        })
        .collect()
}

fn grade(queue: &str, item: &QueueItem, grader: &str, at_ms: i64) -> Grade {
    Grade {
        queue: queue.to_owned(),
        trace_id: item.trace_id.clone(),
        session: item.session.clone(),
        grader: grader.to_owned(),
        rubric: RubricRef {
            name: "quality".into(),
            version: 1,
        },
        answers: [
            (
                "correct".to_owned(),
                Answer {
                    value: "pass".into(),
                    justification: Some(format!("{grader} checked the sources")),
                },
            ),
            (
                "clarity".to_owned(),
                Answer {
                    value: "4".into(),
                    justification: None,
                },
            ),
        ]
        .into_iter()
        .collect(),
        graded_ms: at_ms,
    }
}

async fn create(store: &dyn GradingStore, tenant: &str, spec: &QueueSpec, items: &[QueueItem]) {
    store
        .create_queue(tenant, spec, items)
        .await
        .unwrap_or_else(|e| panic!("create queue {tenant}/{}: {e}", spec.name));
}

async fn claim(store: &dyn GradingStore, queue: &str, grader: &str, now: i64) -> Option<Claim> {
    store
        .claim("acme", queue, grader, now)
        .await
        .unwrap_or_else(|e| panic!("claim {queue} by {grader}: {e}"))
}

/// A claim that must be given: its position and slot.
async fn claimed(store: &dyn GradingStore, queue: &str, grader: &str, now: i64) -> Claim {
    claim(store, queue, grader, now)
        .await
        .unwrap_or_else(|| panic!("{grader} gets an item of {queue}"))
}

async fn item_states(store: &dyn GradingStore, queue: &str) -> Vec<ItemState> {
    store
        .items("acme", queue)
        .await
        .unwrap_or_else(|e| panic!("items of {queue}: {e}"))
}

fn draft(queue: &str, item: &QueueItem, grader: &str, body: serde_json::Value) -> Draft {
    Draft {
        queue: queue.to_owned(),
        trace_id: item.trace_id.clone(),
        grader: grader.to_owned(),
        body,
        saved_ms: T0,
    }
}

pub async fn rubric_versions_are_immutable_idempotent_and_the_latest_is_the_highest(
    store: Arc<dyn GradingStore>,
) {
    let store = &*store;
    assert_eq!(store.rubric("acme", "quality", None).await, Ok(None));
    let v1 = rubric("quality", 1);
    store.put_rubric("acme", &v1).await.expect("put v1");
    store
        .put_rubric("acme", &v1)
        .await
        .expect("the same body again");
    let mut changed = v1.clone();
    changed.criteria[0].guidance = "now stricter".into();
    assert!(
        matches!(
            store.put_rubric("acme", &changed).await,
            Err(GradingError::Conflict(_))
        ),
        "a stored version never changes"
    );
    assert_eq!(
        store.rubric("acme", "quality", Some(1)).await,
        Ok(Some(v1.clone()))
    );
    // 2, 10 and 9 (stored out of order): the latest is 10, not the last stored nor "9" > "10".
    for version in [2, 10, 9] {
        store
            .put_rubric("acme", &rubric("quality", version))
            .await
            .expect("put a version");
    }
    assert_eq!(
        store.rubric("acme", "quality", None).await,
        Ok(Some(rubric("quality", 10)))
    );
    assert_eq!(store.rubric("acme", "quality", Some(1)).await, Ok(Some(v1)));
    assert_eq!(store.rubric("acme", "quality", Some(3)).await, Ok(None));
    assert_eq!(store.rubric("acme", "other", None).await, Ok(None));
    // A name that starts like another is another rubric.
    store
        .put_rubric("acme", &rubric("quality2", 1))
        .await
        .expect("put quality2");
    assert_eq!(
        store.rubric("acme", "quality", None).await,
        Ok(Some(rubric("quality", 10)))
    );
}

pub async fn queue_names_conflict_unless_the_spec_is_the_same_and_a_retry_is_safe(
    store: Arc<dyn GradingStore>,
) {
    let store = &*store;
    assert_eq!(store.queue("acme", "q1").await, Ok(None));
    let mut q1 = spec("q1", &["ann", "bob"], 1);
    q1.deadline_ms = Some(T0 + 86_400_000);
    q1.blind = true;
    create(store, "acme", &q1, &items(0, 3, 1)).await;
    assert_eq!(store.queue("acme", "q1").await, Ok(Some(q1.clone())));
    // A retried create: the same spec and items change nothing.
    create(store, "acme", &q1, &items(0, 3, 1)).await;
    assert_eq!(item_states(store, "q1").await.len(), 3);
    // The same spec with more items adds the new ones.
    create(store, "acme", &q1, &items(0, 5, 1)).await;
    let positions: Vec<u32> = item_states(store, "q1")
        .await
        .iter()
        .map(|s| s.item.position)
        .collect();
    assert_eq!(positions, [0, 1, 2, 3, 4]);
    // A different spec under the name conflicts and changes nothing.
    let mut other = q1.clone();
    other.per_item = 2;
    other.graders.push("cat".into());
    assert!(matches!(
        store.create_queue("acme", &other, &items(5, 7, 2)).await,
        Err(GradingError::Conflict(_))
    ));
    assert_eq!(store.queue("acme", "q1").await, Ok(Some(q1.clone())));
    assert_eq!(item_states(store, "q1").await.len(), 5);
    // Queues are listed by name.
    create(store, "acme", &spec("a0", &["ann"], 1), &[]).await;
    create(store, "acme", &spec("q0", &["ann"], 1), &items(0, 1, 1)).await;
    let names: Vec<String> = store
        .queues("acme")
        .await
        .expect("queues")
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["a0", "q0", "q1"]);
}

pub async fn tenants_are_isolated(store: Arc<dyn GradingStore>) {
    let store = &*store;
    store
        .put_rubric("acme", &rubric("quality", 1))
        .await
        .expect("put");
    assert_eq!(store.rubric("zeta", "quality", None).await, Ok(None));
    assert_eq!(store.rubric("zeta", "quality", Some(1)).await, Ok(None));
    let q = spec("q", &["ann", "bob"], 1);
    create(store, "acme", &q, &items(0, 2, 1)).await;
    assert_eq!(store.queue("zeta", "q").await, Ok(None));
    assert_eq!(store.queues("zeta").await, Ok(Vec::new()));
    // Tenant and queue names that would run together if a key only joined them.
    assert_eq!(store.queue("acme/q", "q").await, Ok(None));
    assert_eq!(store.queue("acme#q", "q").await, Ok(None));
    // Zeta's "ann" is not acme's: she cannot claim, submit or draft in acme's queue.
    assert!(matches!(
        store.claim("zeta", "q", "ann", T0).await,
        Err(GradingError::NotFound(_))
    ));
    let item = &items(0, 1, 1)[0];
    assert!(matches!(
        store.submit("zeta", &grade("q", item, "ann", T0), T0).await,
        Err(GradingError::NotFound(_))
    ));
    assert!(
        store
            .save_draft("zeta", &draft("q", item, "ann", serde_json::json!({})))
            .await
            .is_err()
    );
    for listed in [
        store.items("zeta", "q").await.map(|i| i.len()),
        store.grades("zeta", "q").await.map(|g| g.len()),
    ] {
        assert!(
            matches!(listed, Ok(0) | Err(GradingError::NotFound(_))),
            "another tenant's queue shows nothing: {listed:?}"
        );
    }
    // The same queue name in another tenant is another queue.
    let mut theirs = spec("q", &["zed"], 1);
    theirs.title = "zeta's".into();
    create(store, "zeta", &theirs, &items(7, 8, 1)).await;
    let zed = store
        .claim("zeta", "q", "zed", T0)
        .await
        .expect("claim")
        .expect("an item");
    assert_eq!(zed.item.trace_id, trace(7));
    assert!(matches!(
        store.claim("zeta", "q", "ann", T0).await,
        Err(GradingError::NotAGrader(_))
    ));
    let ann = claimed(store, "q", "ann", T0).await;
    assert_eq!(ann.item.trace_id, trace(0));
    assert_eq!(store.queue("acme", "q").await, Ok(Some(q)));
    assert_eq!(item_states(store, "q").await.len(), 2);
}

pub async fn claims_take_items_in_position_order(store: Arc<dyn GradingStore>) {
    let store = &*store;
    // Given out of order: positions, not the order given, decide.
    let mut given = items(0, 4, 1);
    given.reverse();
    create(store, "acme", &spec("q", &["ann", "bob", "cat"], 1), &given).await;
    let ann = claimed(store, "q", "ann", T0).await;
    assert_eq!((ann.item.position, ann.slot), (0, 0));
    assert_eq!(ann.item, items(0, 1, 1)[0]);
    assert_eq!(
        (ann.queue.as_str(), ann.grader.as_str(), ann.lease_until_ms),
        ("q", "ann", T0 + LEASE)
    );
    let bob = claimed(store, "q", "bob", T0 + 1).await;
    assert_eq!(bob.item.position, 1, "item 0's only slot is ann's");
    let cat = claimed(store, "q", "cat", T0 + 2).await;
    assert_eq!(cat.item.position, 2);
    store
        .submit("acme", &grade("q", &ann.item, "ann", T0 + 3), T0 + 3)
        .await
        .expect("submit");
    assert_eq!(claimed(store, "q", "ann", T0 + 4).await.item.position, 3);
}

pub async fn a_live_claim_is_resumed_first_and_renewed(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 2),
        &items(0, 3, 2),
    )
    .await;
    let first = claimed(store, "q", "ann", T0).await;
    // Up to and at the end of the lease, claiming again gives the same slot, renewed.
    for now in [T0 + 1_000, T0 + 1_000 + LEASE] {
        let again = claimed(store, "q", "ann", now).await;
        assert_eq!((&again.item, again.slot), (&first.item, first.slot));
        assert_eq!(again.lease_until_ms, now + LEASE, "renewed from now");
    }
    // The renewal holds: bob takes the other slot, and no one can take ann's.
    let renewed_until = T0 + 1_000 + 2 * LEASE;
    let bob = claimed(store, "q", "bob", renewed_until).await;
    assert_eq!(bob.item.position, 0);
    assert_ne!(bob.slot, first.slot);
    let states = item_states(store, "q").await;
    assert!(
        states[0].slots.contains(&(
            first.slot,
            SlotState::Held {
                grader: "ann".into(),
                until_ms: renewed_until
            }
        )),
        "{:?}",
        states[0]
    );
}

pub async fn a_lapsed_claim_is_resumed_unless_someone_else_took_it(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 1),
        &items(0, 3, 1),
    )
    .await;
    let first = claimed(store, "q", "ann", T0).await;
    assert_eq!(first.item.position, 0);
    let saved = draft("q", &first.item, "ann", serde_json::json!({"half": "done"}));
    store.save_draft("acme", &saved).await.expect("save");
    // Her lease ran out long ago and nobody took the slot: she gets it back, renewed.
    let late = T0 + 10 * LEASE;
    let resumed = claimed(store, "q", "ann", late).await;
    assert_eq!((&resumed.item, resumed.slot), (&first.item, first.slot));
    assert_eq!(resumed.lease_until_ms, late + LEASE, "renewed from now");
    let states = item_states(store, "q").await;
    assert_eq!(
        states[0].slots,
        [(
            first.slot,
            SlotState::Held {
                grader: "ann".into(),
                until_ms: late + LEASE
            }
        )]
    );
    assert!(
        states[1].seen_by.is_empty(),
        "no other item was taken: {:?}",
        states[1]
    );
    assert_eq!(
        store.draft("acme", "q", &first.item.trace_id, "ann").await,
        Ok(Some(saved)),
        "her draft is there to resume"
    );
    // The renewal holds against others: bob gets item 1, and grades it.
    let bob = claimed(store, "q", "bob", late + LEASE).await;
    assert_eq!(bob.item.position, 1);
    store
        .submit(
            "acme",
            &grade("q", &bob.item, "bob", late + LEASE),
            late + LEASE,
        )
        .await
        .expect("submit");
    // Once her renewed lease runs out and bob takes the slot, ann gets the next item.
    let taken = late + LEASE + 1;
    let bob = claimed(store, "q", "bob", taken).await;
    assert_eq!((&bob.item, bob.slot), (&first.item, first.slot));
    let next = claimed(store, "q", "ann", taken + 1).await;
    assert_eq!(next.item.position, 2, "her slot was taken: the next item");
    assert!(matches!(
        store
            .submit(
                "acme",
                &grade("q", &first.item, "ann", taken + 2),
                taken + 2
            )
            .await,
        Err(GradingError::NotHeld(_))
    ));
}

pub async fn a_lapsed_claim_is_resumed_after_the_deadline(store: Arc<dyn GradingStore>) {
    let store = &*store;
    let deadline = T0 + 10_000;
    let mut q = spec("q", &["ann", "bob"], 1);
    q.deadline_ms = Some(deadline);
    create(store, "acme", &q, &items(0, 2, 1)).await;
    let ann = claimed(store, "q", "ann", deadline - 10).await;
    // Past the deadline and past her lease: still hers to resume, renewed.
    let late = deadline + 5 * LEASE;
    let resumed = claimed(store, "q", "ann", late).await;
    assert_eq!((&resumed.item, resumed.slot), (&ann.item, ann.slot));
    assert_eq!(resumed.lease_until_ms, late + LEASE);
    // Nobody gets anything new.
    assert!(matches!(
        store.claim("acme", "q", "bob", late + 1).await,
        Err(GradingError::Closed(_))
    ));
    store
        .submit("acme", &grade("q", &ann.item, "ann", late + 2), late + 2)
        .await
        .expect("the resumed claim is submitted");
    assert!(matches!(
        store.claim("acme", "q", "ann", late + 3).await,
        Err(GradingError::Closed(_))
    ));
}

pub async fn a_grader_never_gets_an_item_twice(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 2),
        &items(0, 2, 2),
    )
    .await;
    let first = claimed(store, "q", "ann", T0).await;
    assert_eq!(first.item.position, 0);
    store
        .submit("acme", &grade("q", &first.item, "ann", T0 + 1), T0 + 1)
        .await
        .expect("submit");
    // Item 0 still has a free slot, but she graded it: the next item.
    let second = claimed(store, "q", "ann", T0 + 2).await;
    assert_eq!(second.item.position, 1);
    store
        .submit("acme", &grade("q", &second.item, "ann", T0 + 3), T0 + 3)
        .await
        .expect("submit");
    assert_eq!(claim(store, "q", "ann", T0 + 4).await, None);
    // Bob still gets both, in order.
    assert_eq!(claimed(store, "q", "bob", T0 + 5).await.item.position, 0);

    // A slot she lost to another grader, free again later, is not hers again either.
    create(
        store,
        "acme",
        &spec("r", &["ann", "bob"], 1),
        &items(0, 2, 1),
    )
    .await;
    assert_eq!(claimed(store, "r", "ann", T0).await.item.position, 0);
    let taken = T0 + LEASE + 1;
    assert_eq!(claimed(store, "r", "bob", taken).await.item.position, 0);
    // Bob's lease ran out too: item 0's slot is free, but ann saw it.
    let later = taken + LEASE + 1;
    assert_eq!(claimed(store, "r", "ann", later).await.item.position, 1);
}

pub async fn two_graders_never_hold_the_same_slot(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob", "cat"], 2),
        &items(0, 1, 2),
    )
    .await;
    let ann = claimed(store, "q", "ann", T0).await;
    let bob = claimed(store, "q", "bob", T0).await;
    assert_eq!((ann.item.position, bob.item.position), (0, 0));
    assert_ne!(ann.slot, bob.slot, "two slots, two graders");
    assert!(ann.slot < 2 && bob.slot < 2, "slots are 0..slots");
    assert_eq!(claim(store, "q", "cat", T0).await, None, "both slots held");
}

pub async fn concurrent_claims_on_one_slot_have_exactly_one_winner(store: Arc<dyn GradingStore>) {
    const GRADERS: usize = 8;
    let graders: Vec<String> = (0..GRADERS).map(|g| format!("g{g}")).collect();
    let names: Vec<&str> = graders.iter().map(String::as_str).collect();
    create(&*store, "acme", &spec("one", &names, 1), &items(0, 1, 1)).await;
    create(&*store, "acme", &spec("three", &names, 1), &items(0, 3, 1)).await;
    for (queue, count) in [("one", 1usize), ("three", 3)] {
        let mut tasks = tokio::task::JoinSet::new();
        let start = Arc::new(tokio::sync::Barrier::new(GRADERS));
        for grader in &graders {
            let (store, grader, start) = (Arc::clone(&store), grader.clone(), Arc::clone(&start));
            tasks.spawn(async move {
                start.wait().await;
                store.claim("acme", queue, &grader, T0).await
            });
        }
        let mut won = Vec::new();
        while let Some(result) = tasks.join_next().await {
            match result.expect("claim task") {
                Ok(Some(claim)) => won.push(claim),
                Ok(None) => {}
                Err(e) => panic!("a concurrent claim failed instead of losing: {e}"),
            }
        }
        assert_eq!(won.len(), count, "{queue}: one winner per slot: {won:?}");
        let positions: BTreeSet<u32> = won.iter().map(|c| c.item.position).collect();
        assert_eq!(
            positions.len(),
            count,
            "{queue}: no slot given twice: {won:?}"
        );
        let winners: BTreeSet<&str> = won.iter().map(|c| c.grader.as_str()).collect();
        // Only winners are recorded as having seen an item.
        let states = item_states(&*store, queue).await;
        for state in &states {
            let holder = won
                .iter()
                .find(|c| c.item.position == state.item.position)
                .map(|c| c.grader.clone())
                .expect("every item was won");
            assert_eq!(state.seen_by, std::slice::from_ref(&holder), "{queue}");
            assert_eq!(
                state.slots,
                [(
                    0,
                    SlotState::Held {
                        grader: holder,
                        until_ms: T0 + LEASE
                    }
                )]
            );
        }
        assert_eq!(winners.len(), count);
    }
}

pub async fn an_expired_lease_frees_the_slot_for_another_grader(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 1),
        &items(0, 1, 1),
    )
    .await;
    let ann = claimed(store, "q", "ann", T0).await;
    // At the lease's last millisecond it still holds.
    assert_eq!(claim(store, "q", "bob", T0 + LEASE).await, None);
    let bob = claimed(store, "q", "bob", T0 + LEASE + 1).await;
    assert_eq!((&bob.item, bob.slot), (&ann.item, ann.slot));
    assert_eq!(bob.lease_until_ms, T0 + 2 * LEASE + 1);
    let states = item_states(store, "q").await;
    assert_eq!(
        states[0].slots,
        [(
            0,
            SlotState::Held {
                grader: "bob".into(),
                until_ms: T0 + 2 * LEASE + 1
            }
        )]
    );
    assert_eq!(states[0].seen_by, ["ann", "bob"]);
}

pub async fn only_the_queues_graders_may_claim(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(store, "acme", &spec("q", &["ann"], 1), &items(0, 1, 1)).await;
    assert!(matches!(
        store.claim("acme", "q", "mallory", T0).await,
        Err(GradingError::NotAGrader(_))
    ));
    assert!(matches!(
        store.claim("acme", "nope", "ann", T0).await,
        Err(GradingError::NotFound(_))
    ));
    // The refused claim took nothing.
    assert_eq!(claimed(store, "q", "ann", T0).await.item.position, 0);
    assert_eq!(item_states(store, "q").await[0].seen_by, ["ann"]);
}

pub async fn no_new_claims_after_the_deadline_but_resume_and_submit_work(
    store: Arc<dyn GradingStore>,
) {
    let store = &*store;
    let deadline = T0 + 10_000;
    let mut q = spec("q", &["ann", "bob"], 1);
    q.deadline_ms = Some(deadline);
    create(store, "acme", &q, &items(0, 3, 1)).await;
    let ann = claimed(store, "q", "ann", deadline - 10).await;
    assert!(matches!(
        store.claim("acme", "q", "bob", deadline + 1).await,
        Err(GradingError::Closed(_))
    ));
    // Ann's live claim is resumed and renewed after the deadline.
    let resumed = claimed(store, "q", "ann", deadline + 5).await;
    assert_eq!((&resumed.item, resumed.slot), (&ann.item, ann.slot));
    assert_eq!(resumed.lease_until_ms, deadline + 5 + LEASE);
    store
        .submit(
            "acme",
            &grade("q", &ann.item, "ann", deadline + 6),
            deadline + 6,
        )
        .await
        .expect("a held claim is submitted after the deadline");
    // Having nothing held now, she gets no new item.
    assert!(matches!(
        store.claim("acme", "q", "ann", deadline + 7).await,
        Err(GradingError::Closed(_))
    ));
    assert_eq!(
        item_states(store, "q").await[1].seen_by,
        Vec::<String>::new()
    );
}

pub async fn claim_is_none_when_nothing_is_left(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(store, "acme", &spec("empty", &["ann"], 1), &[]).await;
    assert_eq!(claim(store, "empty", "ann", T0).await, None);
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 1),
        &items(0, 2, 1),
    )
    .await;
    for position in 0..2 {
        let c = claimed(store, "q", "ann", T0).await;
        assert_eq!(c.item.position, position);
        store
            .submit("acme", &grade("q", &c.item, "ann", T0), T0)
            .await
            .expect("submit");
    }
    assert_eq!(claim(store, "q", "ann", T0).await, None);
    assert_eq!(
        claim(store, "q", "bob", T0).await,
        None,
        "every slot is done"
    );
    // Done slots stay done however late it gets.
    assert_eq!(claim(store, "q", "bob", T0 + 100 * LEASE).await, None);
}

pub async fn submit_is_accepted_while_held_and_only_once(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(store, "acme", &spec("q", &["ann"], 1), &items(0, 2, 1)).await;
    let c = claimed(store, "q", "ann", T0).await;
    let graded = grade("q", &c.item, "ann", T0 + 5);
    store.submit("acme", &graded, T0 + 5).await.expect("submit");
    assert_eq!(store.grades("acme", "q").await, Ok(vec![graded.clone()]));
    let mut again = graded.clone();
    again.answers.get_mut("clarity").expect("clarity").value = "1".into();
    assert!(matches!(
        store.submit("acme", &again, T0 + 6).await,
        Err(GradingError::NotHeld(_))
    ));
    assert_eq!(
        store.grades("acme", "q").await,
        Ok(vec![graded]),
        "the second grade changed nothing"
    );
    assert_eq!(
        item_states(store, "q").await[0].slots,
        [(
            0,
            SlotState::Done {
                grader: "ann".into()
            }
        )]
    );
}

pub async fn submit_is_accepted_after_expiry_if_no_one_retook_the_slot(
    store: Arc<dyn GradingStore>,
) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 1),
        &items(0, 1, 1),
    )
    .await;
    let c = claimed(store, "q", "ann", T0).await;
    let late = T0 + 10 * LEASE;
    store
        .submit("acme", &grade("q", &c.item, "ann", late), late)
        .await
        .expect("nobody took the slot");
    assert_eq!(claim(store, "q", "bob", late + 1).await, None, "it is done");
}

pub async fn submit_after_the_slot_was_retaken_is_not_held(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 1),
        &items(0, 1, 1),
    )
    .await;
    let c = claimed(store, "q", "ann", T0).await;
    let later = T0 + LEASE + 1;
    claimed(store, "q", "bob", later).await;
    assert!(matches!(
        store
            .submit("acme", &grade("q", &c.item, "ann", later), later)
            .await,
        Err(GradingError::NotHeld(_))
    ));
    assert_eq!(store.grades("acme", "q").await, Ok(Vec::new()));
    store
        .submit("acme", &grade("q", &c.item, "bob", later), later)
        .await
        .expect("bob holds it now");
    let graders: Vec<String> = store
        .grades("acme", "q")
        .await
        .expect("grades")
        .into_iter()
        .map(|g| g.grader)
        .collect();
    assert_eq!(graders, ["bob"]);
}

pub async fn submit_needs_a_claim_and_a_known_queue_and_item(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 2),
        &items(0, 1, 2),
    )
    .await;
    let item = &items(0, 1, 1)[0];
    assert!(matches!(
        store.submit("acme", &grade("q", item, "ann", T0), T0).await,
        Err(GradingError::NotHeld(_))
    ));
    claimed(store, "q", "bob", T0).await;
    assert!(
        matches!(
            store.submit("acme", &grade("q", item, "ann", T0), T0).await,
            Err(GradingError::NotHeld(_))
        ),
        "bob's claim is not ann's"
    );
    let unknown = QueueItem {
        trace_id: trace(99),
        ..item.clone()
    };
    assert!(matches!(
        store
            .submit("acme", &grade("q", &unknown, "bob", T0), T0)
            .await,
        Err(GradingError::NotFound(_))
    ));
    assert!(matches!(
        store
            .submit("acme", &grade("nope", item, "bob", T0), T0)
            .await,
        Err(GradingError::NotFound(_))
    ));
    assert_eq!(store.grades("acme", "q").await, Ok(Vec::new()));
}

pub async fn submit_deletes_the_draft(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(store, "acme", &spec("q", &["ann"], 1), &items(0, 1, 1)).await;
    let c = claimed(store, "q", "ann", T0).await;
    let saved = draft("q", &c.item, "ann", serde_json::json!({"correct": "pass"}));
    store.save_draft("acme", &saved).await.expect("save");
    assert_eq!(
        store.draft("acme", "q", &c.item.trace_id, "ann").await,
        Ok(Some(saved))
    );
    store
        .submit("acme", &grade("q", &c.item, "ann", T0 + 1), T0 + 1)
        .await
        .expect("submit");
    assert_eq!(
        store.draft("acme", "q", &c.item.trace_id, "ann").await,
        Ok(None)
    );
}

pub async fn drafts_are_replaced_and_need_a_claim(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 2),
        &items(0, 1, 2),
    )
    .await;
    let item = &items(0, 1, 2)[0];
    assert!(matches!(
        store
            .save_draft("acme", &draft("q", item, "ann", serde_json::json!({})))
            .await,
        Err(GradingError::NotHeld(_))
    ));
    assert_eq!(
        store.draft("acme", "q", &item.trace_id, "ann").await,
        Ok(None)
    );
    claimed(store, "q", "ann", T0).await;
    let first = draft("q", item, "ann", serde_json::json!({"a": 1}));
    store.save_draft("acme", &first).await.expect("save");
    // Any JSON, kept verbatim.
    let mut second = draft(
        "q",
        item,
        "ann",
        serde_json::json!({"correct": {"value": "fail", "justification": "ünïcode \"quoted\""},
                       "n": [1.5, null, true]}),
    );
    second.saved_ms = T0 + 9;
    store.save_draft("acme", &second).await.expect("replace");
    assert_eq!(
        store.draft("acme", "q", &item.trace_id, "ann").await,
        Ok(Some(second))
    );
    // Drafts are per grader.
    assert_eq!(
        store.draft("acme", "q", &item.trace_id, "bob").await,
        Ok(None)
    );
}

pub async fn a_draft_saved_after_submit_is_refused_and_not_kept(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["ann", "bob"], 2),
        &items(0, 1, 2),
    )
    .await;
    let c = claimed(store, "q", "ann", T0).await;
    store
        .save_draft(
            "acme",
            &draft("q", &c.item, "ann", serde_json::json!({"a": 1})),
        )
        .await
        .expect("save");
    store
        .submit("acme", &grade("q", &c.item, "ann", T0 + 1), T0 + 1)
        .await
        .expect("submit");
    // A late autosave from her still-open page.
    assert!(matches!(
        store
            .save_draft(
                "acme",
                &draft("q", &c.item, "ann", serde_json::json!({"a": 2}))
            )
            .await,
        Err(GradingError::NotHeld(_))
    ));
    assert_eq!(
        store.draft("acme", "q", &c.item.trace_id, "ann").await,
        Ok(None)
    );
    // Another grader of the same item still saves drafts.
    let bob = claimed(store, "q", "bob", T0 + 2).await;
    let theirs = draft("q", &bob.item, "bob", serde_json::json!({"b": 1}));
    store.save_draft("acme", &theirs).await.expect("bob saves");
    assert_eq!(
        store.draft("acme", "q", &bob.item.trace_id, "bob").await,
        Ok(Some(theirs))
    );
}

pub async fn grades_are_listed_by_position_then_grader(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["cat", "ann", "bob"], 2),
        &items(0, 3, 2),
    )
    .await;
    // cat and ann take item 0's two slots, bob item 1.
    let mut held = Vec::new();
    for grader in ["cat", "ann", "bob"] {
        held.push(claimed(store, "q", grader, T0).await);
    }
    // cat 0, ann 0, bob 1. Submit in reverse, then cat takes and grades 1.
    for c in held.iter().rev() {
        store
            .submit("acme", &grade("q", &c.item, &c.grader, T0 + 2), T0 + 2)
            .await
            .expect("submit");
    }
    let cat = claimed(store, "q", "cat", T0 + 3).await;
    assert_eq!(cat.item.position, 1);
    store
        .submit("acme", &grade("q", &cat.item, "cat", T0 + 4), T0 + 4)
        .await
        .expect("submit");
    let listed: Vec<(String, String)> = store
        .grades("acme", "q")
        .await
        .expect("grades")
        .into_iter()
        .map(|g| (g.trace_id, g.grader))
        .collect();
    assert_eq!(
        listed,
        [
            (trace(0), "ann".to_owned()),
            (trace(0), "cat".to_owned()),
            (trace(1), "bob".to_owned()),
            (trace(1), "cat".to_owned()),
        ]
    );
}

pub async fn add_items_skips_known_traces_and_needs_the_queue(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(store, "acme", &spec("q", &["ann"], 1), &items(0, 2, 1)).await;
    // Trace 1 again (at another position, with other slots) is left as it was.
    let mut more = items(2, 4, 1);
    more.insert(
        0,
        QueueItem {
            trace_id: trace(1),
            session: "elsewhere".into(),
            position: 9,
            slots: 3,
        },
    );
    store.add_items("acme", "q", &more).await.expect("add");
    store
        .add_items("acme", "q", &more)
        .await
        .expect("add again");
    let listed: Vec<QueueItem> = item_states(store, "q")
        .await
        .into_iter()
        .map(|s| s.item)
        .collect();
    assert_eq!(listed, items(0, 4, 1));
    assert!(matches!(
        store.add_items("acme", "nope", &items(0, 1, 1)).await,
        Err(GradingError::NotFound(_))
    ));
    // Added items are claimable, in order.
    for position in 0..4 {
        let c = claimed(store, "q", "ann", T0).await;
        assert_eq!(c.item.position, position);
        store
            .submit("acme", &grade("q", &c.item, "ann", T0), T0)
            .await
            .expect("submit");
    }
}

pub async fn items_show_slot_states_and_who_saw_them(store: Arc<dyn GradingStore>) {
    let store = &*store;
    create(
        store,
        "acme",
        &spec("q", &["cat", "ann", "bob"], 2),
        &items(0, 2, 2),
    )
    .await;
    let fresh = item_states(store, "q").await;
    assert_eq!(
        fresh,
        items(0, 2, 2)
            .into_iter()
            .map(|item| ItemState {
                item,
                slots: Vec::new(),
                seen_by: Vec::new()
            })
            .collect::<Vec<_>>(),
        "free slots are absent"
    );
    let cat = claimed(store, "q", "cat", T0).await;
    let ann = claimed(store, "q", "ann", T0 + 1).await;
    store
        .submit("acme", &grade("q", &cat.item, "cat", T0 + 2), T0 + 2)
        .await
        .expect("submit");
    let states = item_states(store, "q").await;
    let mut expected = vec![
        (
            cat.slot,
            SlotState::Done {
                grader: "cat".into(),
            },
        ),
        (
            ann.slot,
            SlotState::Held {
                grader: "ann".into(),
                until_ms: T0 + 1 + LEASE,
            },
        ),
    ];
    expected.sort_by_key(|(slot, _)| *slot);
    assert_eq!(states[0].slots, expected, "by slot");
    assert_eq!(states[0].seen_by, ["ann", "cat"], "sorted");
    assert!(states[1].slots.is_empty() && states[1].seen_by.is_empty());
}
