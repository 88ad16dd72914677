//! The contract of the `ScoreIndex` port: [`score_index_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a fresh, empty index and whatever
//! must outlive it.

use std::collections::BTreeSet;

use agentwire_scoring::{
    Evidence, IndexError, MAX_PAGE, ScoreFilter, ScoreIndex, ScoreRecord, Source,
};

/// Generates one `#[tokio::test]` per case. `$index` is an async fn returning
/// `(Arc<dyn ScoreIndex>, keep)`, where `keep` lives until the case ends.
#[macro_export]
macro_rules! score_index_contract {
    ($index:path) => {
        $crate::score_index_contract!(@cases $index;
            replaced_records_are_the_traces_records,
            replacing_again_replaces_and_never_duplicates,
            sources_are_replaced_separately,
            tenants_are_isolated,
            listing_filters_by_every_condition,
            listing_is_newest_first_and_pages_cover_every_record_once,
            a_page_is_capped_at_max_page,
            records_round_trip_exactly,
            upsert_adds_beside_the_traces_other_records,
            upsert_replaces_the_record_with_the_same_key,
            upsert_refuses_a_record_of_another_tenant_or_trace,
        );
    };
    (@cases $index:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (index, _keep) = $index().await;
                $crate::scores::$case(&*index).await;
            }
        )*
    };
}

/// A record with every optional field empty.
fn record(tenant: &str, trace: &str, source: Source, name: &str, at_ms: i64) -> ScoreRecord {
    ScoreRecord {
        trace_id: trace.to_owned(),
        span_id: None,
        session: format!("session-{trace}"),
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        value: 0.5,
        label: None,
        source,
        explanation: None,
        evidence: Vec::new(),
        scorer: name.split('.').next().unwrap_or(name).to_owned(),
        scorer_version: "1".to_owned(),
        trace_digest: "d1".to_owned(),
        scored_at_ms: at_ms,
        usage: None,
    }
}

async fn replace(
    index: &dyn ScoreIndex,
    tenant: &str,
    trace: &str,
    source: Source,
    records: &[ScoreRecord],
) {
    index
        .replace(tenant, trace, source, records)
        .await
        .unwrap_or_else(|e| panic!("replace {tenant}/{trace}: {e}"));
}

async fn upsert(index: &dyn ScoreIndex, tenant: &str, trace: &str, records: &[ScoreRecord]) {
    index
        .upsert(tenant, trace, records)
        .await
        .unwrap_or_else(|e| panic!("upsert {tenant}/{trace}: {e}"));
}

async fn trace(index: &dyn ScoreIndex, tenant: &str, trace: &str) -> Vec<ScoreRecord> {
    index
        .trace(tenant, trace)
        .await
        .unwrap_or_else(|e| panic!("trace {tenant}/{trace}: {e}"))
}

/// Every record of the listing, following `next` to the end, pages of `limit`.
async fn list_all(index: &dyn ScoreIndex, tenant: &str, filter: &ScoreFilter) -> Vec<ScoreRecord> {
    let mut filter = filter.clone();
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = index
            .list(tenant, &filter)
            .await
            .unwrap_or_else(|e| panic!("list {tenant}: {e}"));
        assert!(
            page.records.len() <= filter.limit.max(1),
            "a page holds at most its limit"
        );
        all.extend(page.records);
        match page.next {
            Some(next) => filter.after = Some(next),
            None => return all,
        }
    }
    panic!("a listing that never ends");
}

fn ids(records: &[ScoreRecord]) -> Vec<(String, String, Option<String>)> {
    records
        .iter()
        .map(|r| (r.trace_id.clone(), r.name.clone(), r.span_id.clone()))
        .collect()
}

pub async fn replaced_records_are_the_traces_records(index: &dyn ScoreIndex) {
    assert!(
        trace(index, "acme", "t1").await.is_empty(),
        "an empty index"
    );
    let mut by_span = record("acme", "t1", Source::Code, "rules.pii", 1_000);
    by_span.span_id = Some("s2".into());
    let mut other_span = by_span.clone();
    other_span.span_id = Some("s1".into());
    let records = vec![
        record("acme", "t1", Source::Code, "tool_use", 1_000),
        by_span,
        record("acme", "t1", Source::Code, "groundedness", 1_000),
        other_span,
    ];
    replace(index, "acme", "t1", Source::Code, &records).await;
    let got = trace(index, "acme", "t1").await;
    // Ordered by source, name and span.
    assert_eq!(
        ids(&got),
        [
            ("t1".into(), "groundedness".into(), None),
            ("t1".into(), "rules.pii".into(), Some("s1".into())),
            ("t1".into(), "rules.pii".into(), Some("s2".into())),
            ("t1".into(), "tool_use".into(), None),
        ]
    );
    assert!(
        trace(index, "acme", "t2").await.is_empty(),
        "another trace has none"
    );
}

pub async fn replacing_again_replaces_and_never_duplicates(index: &dyn ScoreIndex) {
    let first = vec![
        record("acme", "t1", Source::Code, "groundedness", 1_000),
        record("acme", "t1", Source::Code, "tool_use", 1_000),
        record("acme", "t1", Source::Code, "rules.pii", 1_000),
    ];
    replace(index, "acme", "t1", Source::Code, &first).await;
    // The same records again (a retried event): still one of each.
    replace(index, "acme", "t1", Source::Code, &first).await;
    assert_eq!(trace(index, "acme", "t1").await.len(), 3);
    // Fewer, re-scored later: the old ones are gone, from the trace and the listing.
    let mut again = record("acme", "t1", Source::Code, "groundedness", 2_000);
    again.value = 0.9;
    replace(
        index,
        "acme",
        "t1",
        Source::Code,
        std::slice::from_ref(&again),
    )
    .await;
    assert_eq!(trace(index, "acme", "t1").await, vec![again.clone()]);
    let listed = list_all(
        index,
        "acme",
        &ScoreFilter {
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(listed, vec![again], "the listing holds only the new record");
    // Nothing: the trace's code records are gone.
    replace(index, "acme", "t1", Source::Code, &[]).await;
    assert!(trace(index, "acme", "t1").await.is_empty());
    let listed = list_all(
        index,
        "acme",
        &ScoreFilter {
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert!(listed.is_empty());
}

pub async fn sources_are_replaced_separately(index: &dyn ScoreIndex) {
    let human = record("acme", "t1", Source::Human, "groundedness", 500);
    let judge = record("acme", "t1", Source::Judge, "groundedness", 600);
    replace(
        index,
        "acme",
        "t1",
        Source::Human,
        std::slice::from_ref(&human),
    )
    .await;
    replace(
        index,
        "acme",
        "t1",
        Source::Judge,
        std::slice::from_ref(&judge),
    )
    .await;
    let code = record("acme", "t1", Source::Code, "groundedness", 1_000);
    replace(
        index,
        "acme",
        "t1",
        Source::Code,
        std::slice::from_ref(&code),
    )
    .await;
    replace(index, "acme", "t1", Source::Code, &[]).await;
    let got = trace(index, "acme", "t1").await;
    assert_eq!(
        got.len(),
        2,
        "replacing code left the others: {:?}",
        ids(&got)
    );
    let sources: BTreeSet<Source> = got.iter().map(|r| r.source).collect();
    assert_eq!(sources, BTreeSet::from([Source::Human, Source::Judge]));
    // The same name and span under two sources are two records.
    replace(
        index,
        "acme",
        "t1",
        Source::Code,
        std::slice::from_ref(&code),
    )
    .await;
    assert_eq!(trace(index, "acme", "t1").await.len(), 3);
}

pub async fn tenants_are_isolated(index: &dyn ScoreIndex) {
    let acme = record("acme", "t1", Source::Code, "groundedness", 1_000);
    let mut zeta = record("zeta", "t1", Source::Code, "groundedness", 1_000);
    zeta.value = 0.1;
    replace(
        index,
        "acme",
        "t1",
        Source::Code,
        std::slice::from_ref(&acme),
    )
    .await;
    replace(
        index,
        "zeta",
        "t1",
        Source::Code,
        std::slice::from_ref(&zeta),
    )
    .await;
    // Tenant and trace names that would run together if a key only joined them.
    let joined = record("acme#t1", "x", Source::Code, "groundedness", 1_000);
    replace(
        index,
        "acme#t1",
        "x",
        Source::Code,
        std::slice::from_ref(&joined),
    )
    .await;
    let joined2 = record("acme", "t1#x", Source::Code, "groundedness", 1_000);
    replace(
        index,
        "acme",
        "t1#x",
        Source::Code,
        std::slice::from_ref(&joined2),
    )
    .await;
    let slashed = record("acme/t1", "x", Source::Code, "groundedness", 1_000);
    replace(
        index,
        "acme/t1",
        "x",
        Source::Code,
        std::slice::from_ref(&slashed),
    )
    .await;
    let slashed2 = record("acme", "t1/x", Source::Code, "groundedness", 1_000);
    replace(
        index,
        "acme",
        "t1/x",
        Source::Code,
        std::slice::from_ref(&slashed2),
    )
    .await;
    assert_eq!(trace(index, "acme/t1", "x").await, vec![slashed]);
    assert_eq!(trace(index, "acme", "t1/x").await, vec![slashed2]);
    assert_eq!(trace(index, "acme", "t1").await, vec![acme.clone()]);
    assert_eq!(trace(index, "zeta", "t1").await, vec![zeta.clone()]);
    assert_eq!(trace(index, "acme#t1", "x").await, vec![joined]);
    let all = ScoreFilter {
        limit: 10,
        ..ScoreFilter::default()
    };
    assert_eq!(list_all(index, "zeta", &all).await, vec![zeta]);
    assert_eq!(list_all(index, "acme", &all).await.len(), 3);
    assert!(list_all(index, "nobody", &all).await.is_empty());
    // Replacing one tenant's trace leaves the other's.
    replace(index, "zeta", "t1", Source::Code, &[]).await;
    assert_eq!(trace(index, "acme", "t1").await, vec![acme]);
}

pub async fn listing_filters_by_every_condition(index: &dyn ScoreIndex) {
    let mut grounded = record("acme", "t1", Source::Code, "groundedness", 1_000);
    grounded.value = 0.9;
    grounded.label = Some("grounded".into());
    let mut ungrounded = record("acme", "t2", Source::Code, "groundedness", 2_000);
    ungrounded.value = 0.2;
    ungrounded.label = Some("ungrounded".into());
    let mut tool = record("acme", "t2", Source::Code, "tool_use", 2_000);
    tool.value = 0.0;
    tool.label = Some("fail".into());
    let mut human = record("acme", "t3", Source::Human, "groundedness", 3_000);
    human.value = 1.0;
    human.label = Some("grounded".into());
    replace(
        index,
        "acme",
        "t1",
        Source::Code,
        std::slice::from_ref(&grounded),
    )
    .await;
    replace(
        index,
        "acme",
        "t2",
        Source::Code,
        &[ungrounded.clone(), tool.clone()],
    )
    .await;
    replace(
        index,
        "acme",
        "t3",
        Source::Human,
        std::slice::from_ref(&human),
    )
    .await;
    let base = ScoreFilter {
        limit: 100,
        ..ScoreFilter::default()
    };
    let names = |filter: ScoreFilter| async move {
        list_all(index, "acme", &filter)
            .await
            .iter()
            .map(|r| format!("{}/{}", r.trace_id, r.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(ScoreFilter {
            name: Some("tool_use".into()),
            ..base.clone()
        })
        .await,
        ["t2/tool_use"]
    );
    assert_eq!(
        names(ScoreFilter {
            label: Some("grounded".into()),
            ..base.clone()
        })
        .await,
        ["t3/groundedness", "t1/groundedness"]
    );
    assert_eq!(
        names(ScoreFilter {
            source: Some(Source::Human),
            ..base.clone()
        })
        .await,
        ["t3/groundedness"]
    );
    // since is inclusive, until exclusive.
    let window = names(ScoreFilter {
        since_ms: Some(2_000),
        until_ms: Some(3_000),
        ..base.clone()
    })
    .await;
    assert_eq!(
        window.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["t2/groundedness".to_owned(), "t2/tool_use".to_owned()])
    );
    assert_eq!(
        names(ScoreFilter {
            since_ms: Some(2_001),
            ..base.clone()
        })
        .await,
        ["t3/groundedness"]
    );
    assert_eq!(
        names(ScoreFilter {
            until_ms: Some(2_000),
            ..base.clone()
        })
        .await,
        ["t1/groundedness"]
    );
    // max_value is inclusive.
    let failing = names(ScoreFilter {
        max_value: Some(0.2),
        ..base.clone()
    })
    .await;
    assert_eq!(
        failing.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["t2/groundedness".to_owned(), "t2/tool_use".to_owned()])
    );
    // All conditions hold at once.
    assert_eq!(
        names(ScoreFilter {
            name: Some("groundedness".into()),
            source: Some(Source::Code),
            max_value: Some(0.5),
            since_ms: Some(1_000),
            ..base.clone()
        })
        .await,
        ["t2/groundedness"]
    );
    assert!(
        names(ScoreFilter {
            label: Some("none".into()),
            ..base
        })
        .await
        .is_empty()
    );
}

pub async fn listing_is_newest_first_and_pages_cover_every_record_once(index: &dyn ScoreIndex) {
    // 37 traces, 3 records each, several sharing a time, written out of order.
    let mut expected = Vec::new();
    for i in [
        5usize, 0, 36, 17, 2, 30, 11, 8, 1, 3, 4, 6, 7, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21,
        22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35,
    ] {
        let trace_id = format!("t{i:02}");
        let at = 10_000 + (i as i64 / 3) * 100;
        let records: Vec<ScoreRecord> = ["groundedness", "tool_use", "rules.pii"]
            .iter()
            .map(|name| {
                let mut r = record("acme", &trace_id, Source::Code, name, at);
                r.value = if name == &"tool_use" { 0.0 } else { 1.0 };
                r
            })
            .collect();
        replace(index, "acme", &trace_id, Source::Code, &records).await;
        expected.extend(records);
    }
    let all = list_all(
        index,
        "acme",
        &ScoreFilter {
            limit: 1000,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(all.len(), expected.len());
    for pair in all.windows(2) {
        assert!(pair[0].scored_at_ms >= pair[1].scored_at_ms, "newest first");
    }
    for limit in [1, 7, 50] {
        let paged = list_all(
            index,
            "acme",
            &ScoreFilter {
                limit,
                ..ScoreFilter::default()
            },
        )
        .await;
        assert_eq!(
            ids(&paged),
            ids(&all),
            "pages of {limit} are the listing, in order"
        );
        // And with a filter that skips records.
        let filtered = list_all(
            index,
            "acme",
            &ScoreFilter {
                limit,
                max_value: Some(0.0),
                ..ScoreFilter::default()
            },
        )
        .await;
        assert_eq!(
            filtered.len(),
            37,
            "every tool_use record once with pages of {limit}"
        );
        let unique: BTreeSet<_> = ids(&filtered).into_iter().collect();
        assert_eq!(unique.len(), 37);
    }
    // The last page says so.
    let page = index
        .list(
            "acme",
            &ScoreFilter {
                limit: 1000,
                ..ScoreFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.next, None);
}

pub async fn a_page_is_capped_at_max_page(index: &dyn ScoreIndex) {
    let count = MAX_PAGE + 5;
    let records: Vec<ScoreRecord> = (0..count)
        .map(|i| {
            let mut r = record("acme", "big", Source::Code, "rules.r", 1_000 + i as i64);
            r.span_id = Some(format!("s{i:05}"));
            r
        })
        .collect();
    replace(index, "acme", "big", Source::Code, &records).await;
    let page = index
        .list(
            "acme",
            &ScoreFilter {
                limit: usize::MAX,
                ..ScoreFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.records.len(), MAX_PAGE);
    let next = page.next.expect("more than a page");
    let rest = index
        .list(
            "acme",
            &ScoreFilter {
                limit: usize::MAX,
                after: Some(next),
                ..ScoreFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(rest.records.len(), 5);
    assert_eq!(rest.next, None);
    assert_eq!(trace(index, "acme", "big").await.len(), count);
}

pub async fn records_round_trip_exactly(index: &dyn ScoreIndex) {
    let full = ScoreRecord {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: Some("b7ad6b7169203331".into()),
        session: "chat/üñî code".into(),
        tenant: "acme".into(),
        name: "groundedness".into(),
        value: 0.123_456_789_012_345_67,
        label: Some("ungrounded".into()),
        source: Source::Code,
        explanation: Some("unsupported: \"42 km\" (chars 10..15)\nand more".into()),
        evidence: vec![
            Evidence::range("b7ad6b7169203331", 10, 15),
            Evidence::span("00f067aa0ba902b7"),
            Evidence {
                span_id: "x".into(),
                start: Some(3),
                end: None,
            },
        ],
        scorer: "groundedness".into(),
        scorer_version: "2.1".into(),
        trace_digest: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        scored_at_ms: 1_764_547_200_123,
        usage: None,
    };
    let mut bare = record(
        "acme",
        full.trace_id.as_str(),
        Source::Code,
        "latency_cost.total_ms",
        0,
    );
    bare.value = 12_345.0;
    let mut negative = record("acme", full.trace_id.as_str(), Source::Code, "tool_use", -5);
    negative.value = -0.0;
    replace(
        index,
        "acme",
        &full.trace_id,
        Source::Code,
        &[full.clone(), bare.clone(), negative.clone()],
    )
    .await;
    let got = trace(index, "acme", &full.trace_id).await;
    assert_eq!(got, vec![full.clone(), bare.clone(), negative.clone()]);
    let listed = list_all(
        index,
        "acme",
        &ScoreFilter {
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(
        listed,
        vec![full, bare, negative],
        "the listing's records are whole too"
    );
}

/// A human grade's record: `<criterion>/<grader>`, labelled.
fn human(trace: &str, name: &str, label: &str, value: f64, at_ms: i64) -> ScoreRecord {
    let mut r = record("acme", trace, Source::Human, name, at_ms);
    r.label = Some(label.to_owned());
    r.value = value;
    r
}

pub async fn upsert_adds_beside_the_traces_other_records(index: &dyn ScoreIndex) {
    let code = vec![
        record("acme", "t1", Source::Code, "groundedness", 1_000),
        record("acme", "t1", Source::Code, "tool_use", 1_000),
    ];
    replace(index, "acme", "t1", Source::Code, &code).await;
    let ann = human("t1", "quality.correct/ann", "pass", 1.0, 2_000);
    replace(
        index,
        "acme",
        "t1",
        Source::Human,
        std::slice::from_ref(&ann),
    )
    .await;
    // Another grader's records, one of them by span: added, nothing else touched.
    let bob = human("t1", "quality.correct/bob", "fail", 0.0, 3_000);
    let mut bob_span = human("t1", "quality.clarity/bob", "4", 0.75, 3_000);
    bob_span.span_id = Some("s1".into());
    upsert(index, "acme", "t1", &[bob.clone(), bob_span.clone()]).await;
    let got = trace(index, "acme", "t1").await;
    let mut expected = vec![
        code[0].clone(),
        code[1].clone(),
        ann.clone(),
        bob_span,
        bob.clone(),
    ];
    expected.sort_by(|a, b| (a.source, &a.name, &a.span_id).cmp(&(b.source, &b.name, &b.span_id)));
    assert_eq!(got, expected);
    // In the listing as `replace` would put them: by source, label, name and time.
    let humans = list_all(
        index,
        "acme",
        &ScoreFilter {
            source: Some(Source::Human),
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(humans.len(), 3, "{:?}", ids(&humans));
    let failing = list_all(
        index,
        "acme",
        &ScoreFilter {
            label: Some("fail".into()),
            name: Some("quality.correct/bob".into()),
            max_value: Some(0.5),
            since_ms: Some(3_000),
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(failing, [bob]);
    // Upserting nothing changes nothing.
    upsert(index, "acme", "t1", &[]).await;
    assert_eq!(trace(index, "acme", "t1").await.len(), 5);
}

pub async fn upsert_replaces_the_record_with_the_same_key(index: &dyn ScoreIndex) {
    let other = human("t1", "quality.correct/ann", "pass", 1.0, 1_000);
    let first = human("t1", "quality.correct/bob", "fail", 0.0, 1_000);
    upsert(index, "acme", "t1", &[other.clone(), first]).await;
    let regraded = human("t1", "quality.correct/bob", "pass", 1.0, 5_000);
    upsert(index, "acme", "t1", std::slice::from_ref(&regraded)).await;
    assert_eq!(
        trace(index, "acme", "t1").await,
        [other.clone(), regraded.clone()]
    );
    // The old record left the listing too (it was listed under its own time and label).
    let all = list_all(
        index,
        "acme",
        &ScoreFilter {
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert_eq!(
        all,
        [regraded.clone(), other.clone()],
        "newest first, no stale entry"
    );
    let failing = list_all(
        index,
        "acme",
        &ScoreFilter {
            label: Some("fail".into()),
            limit: 10,
            ..ScoreFilter::default()
        },
    )
    .await;
    assert!(failing.is_empty(), "{:?}", ids(&failing));
    // One key given twice in one call: the last one wins.
    let mut last = regraded.clone();
    last.label = Some("fail".into());
    last.value = 0.0;
    upsert(index, "acme", "t1", &[regraded, last.clone()]).await;
    assert_eq!(trace(index, "acme", "t1").await, [other, last]);
}

pub async fn upsert_refuses_a_record_of_another_tenant_or_trace(index: &dyn ScoreIndex) {
    let own = human("t1", "quality.correct/ann", "pass", 1.0, 1_000);
    let mut other_tenant = own.clone();
    other_tenant.tenant = "globex".into();
    let mut other_trace = own.clone();
    other_trace.trace_id = "t2".into();
    for stray in [other_tenant, other_trace] {
        let result = index.upsert("acme", "t1", &[own.clone(), stray]).await;
        assert!(matches!(result, Err(IndexError::Mismatch(_))), "{result:?}");
    }
    assert!(
        trace(index, "acme", "t1").await.is_empty(),
        "nothing was written"
    );
    assert!(trace(index, "acme", "t2").await.is_empty());
    assert!(trace(index, "globex", "t1").await.is_empty());
}
