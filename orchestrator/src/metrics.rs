//! Prometheus metrics: where each migration is, how long its steps took,
//! how often they failed or were retried, and whether this replica leads.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vmi_api::{Phase, Pipeline, VSphereMigrationInfraStatus};

use crate::decide::Note;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Every phase, for the one-hot phase gauge.
const PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Running,
    Phase::Paused,
    Phase::Succeeded,
    Phase::Failed,
    Phase::RollingBack,
    Phase::RolledBack,
];

/// The orchestrator's metrics (cheap to clone; clones share values).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    phase: Family<Labels, Gauge>,
    current_step: Family<Labels, Gauge>,
    step_duration: HistogramFamily,
    failures: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    jobs_created: Family<Labels, Counter>,
    reconcile_errors: Counter,
    leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn buckets() -> Histogram {
    // 1 s to about 9 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vmi");
        let phase = Family::<Labels, Gauge>::default();
        let current_step = Family::<Labels, Gauge>::default();
        let step_duration = HistogramFamily::new_with_constructor(buckets);
        let failures = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let jobs_created = Family::<Labels, Counter>::default();
        let reconcile_errors = Counter::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "migration_phase",
            "1 for the phase each migration is in, 0 for the others",
            phase.clone(),
        );
        registry.register(
            "migration_current_step",
            "Index of the step each migration runs or waits at",
            current_step.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long succeeded steps took, from Job creation to completion",
            step_duration.clone(),
        );
        registry.register(
            "step_failures",
            "Step and undo Jobs that failed",
            failures.clone(),
        );
        registry.register(
            "step_retries",
            "Step and undo Jobs created for a second or later attempt",
            retries.clone(),
        );
        registry.register(
            "jobs_created",
            "Step and undo Jobs created",
            jobs_created.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and were retried",
            reconcile_errors.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica holds the lease and runs migrations (1) or waits (0)",
            leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            phase,
            current_step,
            step_duration,
            failures,
            retries,
            jobs_created,
            reconcile_errors,
            leader,
        }
    }

    /// Records a created Job.
    pub fn job_created(&self, step: &str, undo: bool, attempt: i32) {
        let labels = vec![
            ("step".to_owned(), step.to_owned()),
            (
                "action".to_owned(),
                if undo { "undo" } else { "run" }.to_owned(),
            ),
        ];
        self.jobs_created.get_or_create(&labels).inc();
        if attempt > 1 {
            self.retries.get_or_create(&labels).inc();
        }
    }

    /// Records where migration `key` (`namespace/name`) is after a
    /// reconcile, and what its notes say happened.
    pub fn observe(
        &self,
        key: &str,
        pipeline: &Pipeline,
        status: &VSphereMigrationInfraStatus,
        notes: &[Note],
    ) {
        let migration = ("migration".to_owned(), key.to_owned());
        for phase in PHASES {
            let labels = vec![
                migration.clone(),
                ("phase".to_owned(), format!("{phase:?}")),
            ];
            self.phase
                .get_or_create(&labels)
                .set(i64::from(status.phase == Some(phase)));
        }
        let current = status
            .current_step
            .as_deref()
            .and_then(|label| label.split_once(' '))
            .and_then(|(_, name)| pipeline.step(name))
            .map_or(-1, |s| i64::from(s.index));
        self.current_step
            .get_or_create(&vec![migration])
            .set(current);
        for note in notes {
            let Some(step) = &note.step else {
                continue;
            };
            let labels = vec![("step".to_owned(), step.clone())];
            match note.reason {
                "StepFailed" | "UndoFailed" => {
                    self.failures.get_or_create(&labels).inc();
                }
                "StepSucceeded" => {
                    let entry = status.steps.iter().find(|e| &e.name == step);
                    if let Some((Some(start), Some(end))) =
                        entry.map(|e| (&e.started_at, &e.finished_at))
                    {
                        let seconds =
                            (end.0.as_millisecond() - start.0.as_millisecond()) as f64 / 1000.0;
                        self.step_duration
                            .get_or_create(&labels)
                            .observe(seconds.max(0.0));
                    }
                }
                _ => {}
            }
        }
    }

    /// Drops the series of a deleted migration.
    pub fn forget(&self, key: &str) {
        let migration = ("migration".to_owned(), key.to_owned());
        for phase in PHASES {
            self.phase.remove(&vec![
                migration.clone(),
                ("phase".to_owned(), format!("{phase:?}")),
            ]);
        }
        self.current_step.remove(&vec![migration]);
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self) {
        self.reconcile_errors.inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_shows_phase_failures_and_leadership() {
        let metrics = Metrics::new();
        let pipeline = Pipeline::vcenter_migration().unwrap();
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Failed),
            current_step: Some("3/17 backup-cpms".into()),
            ..Default::default()
        };
        let failed = Note {
            warning: true,
            reason: "StepFailed",
            message: "Step 3/17 backup-cpms failed: no CPMS. Job vmi-step-03-backup-cpms".into(),
            subject: "vmi-step-03-backup-cpms#1".into(),
            step: Some("backup-cpms".into()),
        };
        metrics.observe("ns/move", &pipeline, &status, &[failed]);
        metrics.job_created("backup-cpms", false, 2);
        metrics.set_leader(true);
        let text = metrics.render();
        assert!(
            text.contains("vmi_migration_phase{migration=\"ns/move\",phase=\"Failed\"} 1"),
            "{text}"
        );
        assert!(text.contains("vmi_migration_phase{migration=\"ns/move\",phase=\"Running\"} 0"));
        assert!(text.contains("vmi_migration_current_step{migration=\"ns/move\"} 3"));
        assert!(
            text.contains("vmi_step_failures_total{step=\"backup-cpms\"} 1"),
            "{text}"
        );
        assert!(text.contains("vmi_step_retries_total{step=\"backup-cpms\",action=\"run\"} 1"));
        assert!(text.lines().any(|l| l == "vmi_leader 1"), "{text}");
        metrics.forget("ns/move");
        assert!(!metrics.render().contains("ns/move\",phase"));
    }
}
