//! The report pages' agreement section, from the grading service.

use agentwire_report::site::{AgreementSource, QueueAgreement};
use async_trait::async_trait;

use crate::GradingService;

/// Every queue of a tenant with its agreement per criterion.
pub struct Agreements(pub GradingService);

#[async_trait]
impl AgreementSource for Agreements {
    async fn agreements(&self, tenant: &str) -> Result<Vec<QueueAgreement>, String> {
        let queues = self
            .0
            .store()
            .queues(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for queue in queues {
            let figures = self
                .0
                .agreement(tenant, &queue.name)
                .await
                .map_err(|e| format!("queue {}: {e}", queue.name))?;
            if figures.grades > 0 {
                out.push(QueueAgreement {
                    queue: queue.name,
                    criteria: figures.criteria,
                });
            }
        }
        Ok(out)
    }
}
