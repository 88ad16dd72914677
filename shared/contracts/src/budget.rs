//! The contract of the `BudgetLedger` port: [`budget_ledger_contract!`] expands to one
//! `#[tokio::test]` per case, given an async fn returning a fresh, empty ledger and whatever
//! must outlive it.
//!
//! The property every case leans on: a reservation is added whole or not at all, in one
//! atomic step, so however many judges reserve at once the day's spend never passes a cap
//! and always equals the sum of what was accepted, given back and added.

use std::sync::Arc;

use agentwire_scoring::budget::{BudgetLedger, Caps, Charge};

/// Generates one `#[tokio::test]` per case (on a multi-threaded runtime, so concurrent
/// reservations really run at once). `$subject` is an async fn returning
/// `(Arc<dyn BudgetLedger>, keep)`, where `keep` lives until the case ends.
#[macro_export]
macro_rules! budget_ledger_contract {
    ($subject:path) => {
        $crate::budget_ledger_contract!(@cases $subject;
            a_reservation_within_the_caps_is_added,
            a_reservation_crossing_the_token_cap_is_refused_whole,
            a_reservation_crossing_the_dollar_cap_is_refused_whole,
            without_caps_every_reservation_is_added,
            release_gives_back_and_never_goes_below_zero,
            add_is_unconditional,
            tenants_and_days_are_separate,
            sixteen_concurrent_reservers_never_pass_the_cap,
            concurrent_releases_and_reservations_keep_the_sum,
        );
    };
    (@cases $subject:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (ledger, _keep) = $subject().await;
                $crate::budget::$case(ledger).await;
            }
        )*
    };
}

const TENANT: &str = "acme";
const DAY: &str = "2026-03-14";

fn charge(tokens: u64, micro_usd: u64) -> Charge {
    Charge { tokens, micro_usd }
}

fn token_cap(tokens: u64) -> Caps {
    Caps {
        tokens: Some(tokens),
        micro_usd: None,
    }
}

fn dollar_cap(micro_usd: u64) -> Caps {
    Caps {
        tokens: None,
        micro_usd: Some(micro_usd),
    }
}

async fn spent(ledger: &dyn BudgetLedger, tenant: &str, day: &str) -> Charge {
    ledger.spent(tenant, day).await.expect("spent")
}

async fn reserve(ledger: &dyn BudgetLedger, amount: Charge, caps: Caps) -> bool {
    ledger
        .reserve(TENANT, DAY, amount, caps)
        .await
        .expect("reserve")
}

/// Reservations up to exactly the caps are added; `spent` reads their sum, and a day
/// nothing was spent on reads zero.
pub async fn a_reservation_within_the_caps_is_added(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    assert_eq!(spent(ledger, TENANT, DAY).await, Charge::default());
    let caps = Caps {
        tokens: Some(1_000),
        micro_usd: Some(50_000),
    };
    assert!(reserve(ledger, charge(400, 20_000), caps).await);
    assert!(reserve(ledger, charge(250, 5_000), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(650, 25_000));
    // Reaching a cap exactly is within it.
    assert!(reserve(ledger, charge(350, 25_000), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(1_000, 50_000));
}

/// A reservation that would take the tokens past their cap adds nothing, not even its
/// dollars, and not the part that would have fit.
pub async fn a_reservation_crossing_the_token_cap_is_refused_whole(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    let caps = Caps {
        tokens: Some(1_000),
        micro_usd: Some(1_000_000),
    };
    assert!(
        !reserve(ledger, charge(1_001, 1), caps).await,
        "more than the whole cap is refused on an empty day"
    );
    assert_eq!(spent(ledger, TENANT, DAY).await, Charge::default());
    assert!(reserve(ledger, charge(900, 100), caps).await);
    assert!(!reserve(ledger, charge(101, 100), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(900, 100));
    assert!(reserve(ledger, charge(100, 100), caps).await);
    assert!(
        !reserve(ledger, charge(1, 0), caps).await,
        "the cap is full"
    );
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(1_000, 200));
}

/// The same for the dollar cap: refused whole, its tokens not added either.
pub async fn a_reservation_crossing_the_dollar_cap_is_refused_whole(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    let caps = Caps {
        tokens: Some(1_000_000),
        micro_usd: Some(1_000_000),
    };
    assert!(!reserve(ledger, charge(10, 1_000_001), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, Charge::default());
    assert!(reserve(ledger, charge(10, 600_000), caps).await);
    assert!(!reserve(ledger, charge(10, 400_001), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(10, 600_000));
    assert!(reserve(ledger, charge(10, 400_000), dollar_cap(1_000_000)).await);
    assert!(!reserve(ledger, charge(0, 1), dollar_cap(1_000_000)).await);
    // Nothing more to pay stays within a full cap.
    assert!(reserve(ledger, charge(5, 0), dollar_cap(1_000_000)).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(25, 1_000_000));
}

/// No cap, no refusal, whatever the amounts; a missing cap does not limit its unit while
/// the other cap still does.
pub async fn without_caps_every_reservation_is_added(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    let big = charge(1_000_000_000_000, 5_000_000_000_000);
    assert!(reserve(ledger, big, Caps::default()).await);
    assert!(reserve(ledger, big, Caps::default()).await);
    assert_eq!(
        spent(ledger, TENANT, DAY).await,
        charge(2_000_000_000_000, 10_000_000_000_000)
    );
    assert!(reserve(ledger, charge(1, 1), token_cap(2_000_000_000_001)).await);
    assert!(!reserve(ledger, charge(1, 1), token_cap(2_000_000_000_001)).await);
    assert!(reserve(ledger, charge(0, 1), token_cap(2_000_000_000_001)).await);
    assert_eq!(
        spent(ledger, TENANT, DAY).await,
        charge(2_000_000_000_001, 10_000_000_000_002)
    );
}

/// A release gives back what it names, each unit on its own, and never takes a unit
/// below zero (nor a day that has nothing).
pub async fn release_gives_back_and_never_goes_below_zero(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    ledger
        .release(TENANT, DAY, charge(50, 50))
        .await
        .expect("release on an empty day");
    assert_eq!(spent(ledger, TENANT, DAY).await, Charge::default());

    let caps = token_cap(1_000);
    assert!(reserve(ledger, charge(1_000, 1_000), caps).await);
    ledger
        .release(TENANT, DAY, charge(300, 300))
        .await
        .expect("release");
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(700, 700));
    // The room given back can be reserved again.
    assert!(reserve(ledger, charge(300, 0), caps).await);
    assert!(!reserve(ledger, charge(1, 0), caps).await);
    ledger
        .release(TENANT, DAY, charge(5_000, 200))
        .await
        .expect("release more tokens than spent");
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(0, 500));
    ledger
        .release(TENANT, DAY, charge(1, 9_999))
        .await
        .expect("release more dollars than spent");
    assert_eq!(spent(ledger, TENANT, DAY).await, Charge::default());
    assert!(reserve(ledger, charge(1_000, 0), caps).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(1_000, 0));
}

/// `add` counts past a cap (a reply that used more than reserved); later reservations
/// then see the spend beyond the cap and are refused.
pub async fn add_is_unconditional(ledger: Arc<dyn BudgetLedger>) {
    let ledger = ledger.as_ref();
    ledger
        .add(TENANT, DAY, charge(10, 10))
        .await
        .expect("add to an empty day");
    let caps = Caps {
        tokens: Some(100),
        micro_usd: Some(100),
    };
    assert!(reserve(ledger, charge(90, 90), caps).await);
    ledger
        .add(TENANT, DAY, charge(40, 7))
        .await
        .expect("add past the cap");
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(140, 107));
    assert!(
        !reserve(ledger, charge(0, 0), caps).await,
        "already past both caps"
    );
    assert!(!reserve(ledger, charge(0, 0), token_cap(100)).await);
    assert!(reserve(ledger, charge(0, 0), token_cap(140)).await);
    assert_eq!(spent(ledger, TENANT, DAY).await, charge(140, 107));
}

/// Each tenant has its own spend per day: filling one leaves every other untouched, also
/// for names that share prefixes or hold separators.
pub async fn tenants_and_days_are_separate(ledger: Arc<dyn BudgetLedger>) {
    let caps = token_cap(100);
    let places = [
        ("acme", "2026-03-14"),
        ("acme", "2026-03-15"),
        ("acme/eu", "2026-03-14"),
        ("acme#2026-03-14", "2026-03-14"),
        ("acm", "e2026-03-14"),
    ];
    for (i, (tenant, day)) in places.iter().enumerate() {
        let amount = charge(100 - i as u64, i as u64);
        assert!(
            ledger
                .reserve(tenant, day, amount, caps)
                .await
                .expect("reserve"),
            "{tenant} on {day} starts empty"
        );
    }
    for (i, (tenant, day)) in places.iter().enumerate() {
        assert_eq!(
            spent(ledger.as_ref(), tenant, day).await,
            charge(100 - i as u64, i as u64),
            "{tenant} on {day}"
        );
    }
    ledger
        .release("acme", "2026-03-15", charge(1_000, 1_000))
        .await
        .expect("release");
    ledger
        .add("acme/eu", "2026-03-14", charge(1, 1))
        .await
        .expect("add");
    assert_eq!(
        spent(ledger.as_ref(), "acme", "2026-03-14").await,
        charge(100, 0)
    );
    assert_eq!(
        spent(ledger.as_ref(), "acme", "2026-03-15").await,
        Charge::default()
    );
    assert_eq!(
        spent(ledger.as_ref(), "acme/eu", "2026-03-14").await,
        charge(99, 3)
    );
    assert_eq!(
        spent(ledger.as_ref(), "other", "2026-03-14").await,
        Charge::default()
    );
}

/// 16 judges reserving small, uneven amounts at once against a cap none of them divides:
/// the spend ends within the cap, equal to the sum of the accepted reservations, and full
/// (each reserver was refused only once its next amount no longer fit).
pub async fn sixteen_concurrent_reservers_never_pass_the_cap(ledger: Arc<dyn BudgetLedger>) {
    const RESERVERS: u64 = 16;
    const CAP: u64 = 1_009;
    let caps = token_cap(CAP);
    let start = Arc::new(tokio::sync::Barrier::new(RESERVERS as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..RESERVERS {
        let (ledger, start) = (Arc::clone(&ledger), Arc::clone(&start));
        // 3 to 10 tokens each, and dollars in step with them (no dollar cap).
        let amount = charge(3 + r % 8, 7 * (3 + r % 8) + r);
        tasks.spawn(async move {
            start.wait().await;
            let mut accepted = Charge::default();
            while ledger
                .reserve(TENANT, DAY, amount, caps)
                .await
                .expect("reserve")
            {
                accepted.tokens += amount.tokens;
                accepted.micro_usd += amount.micro_usd;
            }
            accepted
        });
    }
    let mut accepted = Charge::default();
    while let Some(result) = tasks.join_next().await {
        let one = result.expect("reserver task");
        accepted.tokens += one.tokens;
        accepted.micro_usd += one.micro_usd;
    }
    let total = spent(ledger.as_ref(), TENANT, DAY).await;
    assert!(
        total.tokens <= CAP,
        "{} tokens spent of {CAP}",
        total.tokens
    );
    assert_eq!(total, accepted, "the spend is the sum of the accepted");
    assert!(
        CAP - total.tokens < 3,
        "every reserver was refused, so not even the smallest amount (3) fits: {} spent",
        total.tokens
    );
}

/// Reservations and the releases that follow them (a call that cost less than reserved)
/// interleaved across 8 judges: the spend never passes the cap and ends exactly at what
/// was reserved less what was given back.
pub async fn concurrent_releases_and_reservations_keep_the_sum(ledger: Arc<dyn BudgetLedger>) {
    const JUDGES: u64 = 8;
    const CALLS: u64 = 20;
    const CAP: u64 = 503;
    let caps = Caps {
        tokens: Some(CAP),
        micro_usd: Some(10 * CAP),
    };
    let start = Arc::new(tokio::sync::Barrier::new(JUDGES as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for j in 0..JUDGES {
        let (ledger, start) = (Arc::clone(&ledger), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            let (mut kept, mut refused) = (Charge::default(), 0u64);
            for call in 0..CALLS {
                let tokens = 5 + (j + call) % 7;
                let amount = charge(tokens, 10 * tokens);
                if !ledger
                    .reserve(TENANT, DAY, amount, caps)
                    .await
                    .expect("reserve")
                {
                    refused += 1;
                    continue;
                }
                // The call used between nothing and all of it.
                let used = charge(tokens * (call % 3) / 2, 10 * tokens * (call % 3) / 2);
                let refund = charge(
                    amount.tokens - used.tokens,
                    amount.micro_usd - used.micro_usd,
                );
                ledger.release(TENANT, DAY, refund).await.expect("release");
                kept.tokens += used.tokens;
                kept.micro_usd += used.micro_usd;
            }
            (kept, refused)
        });
    }
    let (mut kept, mut refused) = (Charge::default(), 0);
    while let Some(result) = tasks.join_next().await {
        let (one, no) = result.expect("judge task");
        kept.tokens += one.tokens;
        kept.micro_usd += one.micro_usd;
        refused += no;
    }
    let total = spent(ledger.as_ref(), TENANT, DAY).await;
    assert!(
        total.tokens <= CAP && total.micro_usd <= 10 * CAP,
        "{total:?}"
    );
    assert_eq!(total, kept, "reserved less given back, exactly");
    assert!(
        refused > 0,
        "the cap is small enough that some reservations are refused"
    );
}
