//! A tenant's daily judge budget, in tokens and in dollars (micro-dollars, so the stores
//! add integers). A call reserves an upper bound of what it can cost before it is sent,
//! conditionally on the day's spend staying within the caps; when the reply reports its
//! usage the difference is given back. So concurrent judges, in any number of processes,
//! never spend past a cap: a reservation that would cross it is refused whole.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// An amount spent or reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub tokens: u64,
    /// Millionths of a US dollar.
    pub micro_usd: u64,
}

impl Charge {
    /// Both amounts added, each saturating.
    pub fn plus(self, more: Charge) -> Charge {
        Charge {
            tokens: self.tokens.saturating_add(more.tokens),
            micro_usd: self.micro_usd.saturating_add(more.micro_usd),
        }
    }

    /// Both amounts less `less`, each at least zero.
    pub fn minus(self, less: Charge) -> Charge {
        Charge {
            tokens: self.tokens.saturating_sub(less.tokens),
            micro_usd: self.micro_usd.saturating_sub(less.micro_usd),
        }
    }
}

/// A day's caps; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub tokens: Option<u64>,
    pub micro_usd: Option<u64>,
}

impl Caps {
    /// Whether `spent` plus `charge` stays within both caps.
    pub fn allow(&self, spent: Charge, charge: Charge) -> bool {
        let within = |cap: Option<u64>, spent: u64, more: u64| {
            cap.is_none_or(|cap| spent.checked_add(more).is_some_and(|total| total <= cap))
        };
        within(self.tokens, spent.tokens, charge.tokens)
            && within(self.micro_usd, spent.micro_usd, charge.micro_usd)
    }
}

/// Why the ledger could not answer; the same call may succeed later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("judge budget: {0}")]
pub struct LedgerError(pub String);

/// The day's spend per tenant (`day` is `YYYY-MM-DD`, UTC).
#[async_trait]
pub trait BudgetLedger: Send + Sync {
    /// Adds `charge` to the tenant's spend of `day` when the total stays within `caps`, in
    /// one atomic step: `Ok(true)` when added, `Ok(false)` (and nothing added) when it
    /// would cross a cap.
    async fn reserve(
        &self,
        tenant: &str,
        day: &str,
        charge: Charge,
        caps: Caps,
    ) -> Result<bool, LedgerError>;

    /// Gives back `refund` of an earlier reservation (the call cost less than reserved, or
    /// was never sent). The spend never goes below zero.
    async fn release(&self, tenant: &str, day: &str, refund: Charge) -> Result<(), LedgerError>;

    /// Adds `extra` unconditionally: a reply that reported more than was reserved is still
    /// counted (the reservation is an upper bound, so this should not happen).
    async fn add(&self, tenant: &str, day: &str, extra: Charge) -> Result<(), LedgerError>;

    /// The tenant's spend of `day` (zero when nothing was spent).
    async fn spent(&self, tenant: &str, day: &str) -> Result<Charge, LedgerError>;
}

/// An in-memory ledger for one process (the offline `agentwire judge` and tests).
#[derive(Default)]
pub struct MemoryLedger {
    days: std::sync::Mutex<std::collections::HashMap<(String, String), Charge>>,
}

#[async_trait]
impl BudgetLedger for MemoryLedger {
    async fn reserve(
        &self,
        tenant: &str,
        day: &str,
        charge: Charge,
        caps: Caps,
    ) -> Result<bool, LedgerError> {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let spent = days.entry((tenant.into(), day.into())).or_default();
        if !caps.allow(*spent, charge) {
            return Ok(false);
        }
        *spent = spent.plus(charge);
        Ok(true)
    }

    async fn release(&self, tenant: &str, day: &str, refund: Charge) -> Result<(), LedgerError> {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let spent = days.entry((tenant.into(), day.into())).or_default();
        *spent = spent.minus(refund);
        Ok(())
    }

    async fn add(&self, tenant: &str, day: &str, extra: Charge) -> Result<(), LedgerError> {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let spent = days.entry((tenant.into(), day.into())).or_default();
        *spent = spent.plus(extra);
        Ok(())
    }

    async fn spent(&self, tenant: &str, day: &str) -> Result<Charge, LedgerError> {
        let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        Ok(days
            .get(&(tenant.to_owned(), day.to_owned()))
            .copied()
            .unwrap_or_default())
    }
}
