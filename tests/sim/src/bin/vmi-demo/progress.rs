//! The live progress: one plain line per change of the phase, of a step's
//! state or attempt, of the machines and nodes on the target, or of the
//! volumes step 13 has moved.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use vmi_api::migration::Count;
use vmi_api::{Phase, Step, StepState, StepStatus, VSphereMigrationInfraStatus};
use vmi_sim::migration::MachineProgress;

/// What has been shown so far.
#[derive(Debug, Default)]
pub struct Tracker {
    phase: Option<Phase>,
    steps: BTreeMap<i32, (StepState, i32)>,
    machines: Option<MachineProgress>,
    volumes: Option<Count>,
}

impl Tracker {
    /// The lines that show what changed since the last call; `elapsed` is
    /// the time since the migration started, `now` the wall clock.
    pub fn update(
        &mut self,
        elapsed: Duration,
        status: &VSphereMigrationInfraStatus,
        machines: Option<MachineProgress>,
        now: Timestamp,
    ) -> Vec<String> {
        let at = format!("[{:>6}]", clock(elapsed));
        let moved = machines.or(self.machines);
        let volumes = volume_count(status);
        let mut lines = Vec::new();
        if status.phase.is_some() && status.phase != self.phase {
            self.phase = status.phase;
            lines.push(format!("{at} phase {}", name(status.phase)));
        }
        let mut stepped = false;
        for step in &status.steps {
            let now_seen = (step.state, step.attempt);
            if self.steps.get(&step.index) != Some(&now_seen) {
                self.steps.insert(step.index, now_seen);
                lines.push(format!("{at} {}", step_line(step, moved, volumes, now)));
                stepped = true;
            }
        }
        let mut changed = false;
        if machines.is_some() && machines != self.machines {
            // The first reading comes with the first step line.
            changed |= self.machines.is_some();
            self.machines = machines;
        }
        if volumes.is_some() && volumes != self.volumes {
            changed = true;
            self.volumes = volumes;
        }
        if changed && !stepped {
            match status.steps.last() {
                Some(step) => lines.push(format!("{at} {}", step_line(step, moved, volumes, now))),
                None => lines.push(format!("{at} {}", moved_text(moved))),
            }
        }
        lines
    }
}

/// `status.progress.volumes`: the volumes step 13 completed out of those
/// it moves.
pub fn volume_count(status: &VSphereMigrationInfraStatus) -> Option<Count> {
    status.progress.as_ref().and_then(|p| p.volumes)
}

/// `07 update-infra          Succeeded  took 1s     machines 0/5, nodes 0/5 on target`;
/// step 13's line ends with `; volumes 2/5 moved` once the step counts them.
pub fn step_line(
    step: &StepStatus,
    machines: Option<MachineProgress>,
    volumes: Option<Count>,
    now: Timestamp,
) -> String {
    let time = match (&step.started_at, &step.finished_at) {
        (Some(start), Some(end)) => format!("took {}", seconds(between(&start.0, &end.0))),
        (Some(start), None) => format!("for {}", seconds(between(&start.0, &now))),
        _ => String::new(),
    };
    let mut moved = moved_text(machines);
    if step.name == Step::MigrateVolumes.name()
        && let Some(count) = volumes
    {
        if !moved.is_empty() {
            moved.push_str("; ");
        }
        moved.push_str(&format!("volumes {}/{} moved", count.done, count.total));
    }
    let mut line = format!(
        "{:02} {:<22} {:<10} {:<11} {moved}",
        step.index,
        step.name,
        format!("{:?}", step.state),
        time,
    )
    .trim_end()
    .to_owned();
    if step.attempt > 1 {
        line.push_str(&format!(" (attempt {})", step.attempt));
    }
    line
}

fn moved_text(machines: Option<MachineProgress>) -> String {
    machines.map(|m| m.to_string()).unwrap_or_default()
}

/// The time from `start` to `end` (zero when `end` is earlier).
pub fn between(start: &Timestamp, end: &Timestamp) -> Duration {
    Duration::try_from(end.duration_since(*start)).unwrap_or_default()
}

/// `0.4s`, `12.3s`, `3m05s`, `1h02m`.
pub fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Whole seconds, as the status times have them: `0s`, `12s`, `3m05s`.
pub fn seconds(d: Duration) -> String {
    match d.as_secs() {
        secs @ 0..60 => format!("{secs}s"),
        _ => clock(d),
    }
}

/// A phase's name, `-` when there is none yet.
pub fn name(phase: Option<Phase>) -> String {
    phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use vmi_api::migration::Progress;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn step(index: i32, name: &str, state: StepState, start: i64, end: Option<i64>) -> StepStatus {
        let mut s = StepStatus::started(index, name, &format!("vmi-step-{index:02}-{name}"), 1);
        s.state = state;
        s.started_at = Some(Time(at(start)));
        s.finished_at = end.map(|e| Time(at(e)));
        s
    }

    #[test]
    fn clock_reads_well() {
        assert_eq!(clock(Duration::from_millis(400)), "0.4s");
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
        assert_eq!(seconds(Duration::from_millis(2900)), "2s");
        assert_eq!(seconds(Duration::from_secs(65)), "1m05s");
    }

    #[test]
    fn one_line_per_change() {
        let mut tracker = Tracker::default();
        let moved = |n| {
            Some(MachineProgress {
                machines_on_target: n,
                machines: 5,
                nodes_on_target: n,
                nodes: 5,
            })
        };
        let mut status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Running),
            steps: vec![step(0, "preflight", StepState::Running, 0, None)],
            ..Default::default()
        };
        let lines = tracker.update(Duration::from_secs(1), &status, moved(0), at(2));
        assert_eq!(
            lines,
            [
                "[  1.0s] phase Running",
                "[  1.0s] 00 preflight              Running    for 2s      machines 0/5, nodes 0/5 on target",
            ]
        );
        assert!(
            tracker
                .update(Duration::from_secs(2), &status, moved(0), at(3))
                .is_empty()
        );
        status.steps[0] = step(0, "preflight", StepState::Succeeded, 0, Some(3));
        status
            .steps
            .push(step(1, "disable-cvo", StepState::Skipped, 3, Some(3)));
        let lines = tracker.update(Duration::from_secs(4), &status, moved(0), at(4));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("[  4.0s] 00 preflight              Succeeded  took 3s"));
        assert!(lines[1].contains("01 disable-cvo            Skipped    took 0s"));
        // Machines moving during a step: a line for that step.
        let lines = tracker.update(Duration::from_secs(75), &status, moved(2), at(75));
        assert_eq!(
            lines,
            [
                "[ 1m15s] 01 disable-cvo            Skipped    took 0s     machines 2/5, nodes 2/5 on target"
            ]
        );
        status.phase = Some(Phase::Failed);
        assert_eq!(
            tracker.update(Duration::from_secs(76), &status, None, at(76)),
            ["[ 1m16s] phase Failed"]
        );
    }

    #[test]
    fn step_13_shows_the_volumes_moved() {
        let mut tracker = Tracker::default();
        let moved = Some(MachineProgress {
            machines_on_target: 5,
            machines: 7,
            nodes_on_target: 5,
            nodes: 7,
        });
        let mut status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Running),
            steps: vec![
                step(12, "recreate-cpms", StepState::Succeeded, 0, Some(8)),
                step(13, "migrate-volumes", StepState::Running, 8, None),
            ],
            ..Default::default()
        };
        let lines = tracker.update(Duration::from_secs(9), &status, moved, at(9));
        assert_eq!(
            lines[2],
            "[  9.0s] 13 migrate-volumes        Running    for 1s      machines 5/7, nodes 5/7 on target"
        );
        // The step counts its volumes: a line; the same count again: none.
        let count = |done| {
            Some(Progress {
                volumes: Some(Count { done, total: 5 }),
                ..Default::default()
            })
        };
        status.progress = count(0);
        assert_eq!(
            tracker.update(Duration::from_secs(10), &status, moved, at(10)),
            [
                "[ 10.0s] 13 migrate-volumes        Running    for 2s      machines 5/7, nodes 5/7 on target; volumes 0/5 moved"
            ]
        );
        assert!(
            tracker
                .update(Duration::from_secs(11), &status, moved, at(11))
                .is_empty()
        );
        status.progress = count(3);
        assert_eq!(
            tracker.update(Duration::from_secs(14), &status, moved, at(14)),
            [
                "[ 14.0s] 13 migrate-volumes        Running    for 6s      machines 5/7, nodes 5/7 on target; volumes 3/5 moved"
            ]
        );
        // Done: one line, with the count; the next step's lines have none.
        status.progress = count(5);
        status.steps[1] = step(13, "migrate-volumes", StepState::Succeeded, 8, Some(17));
        status
            .steps
            .push(step(14, "scale-down-source", StepState::Running, 17, None));
        assert_eq!(
            tracker.update(Duration::from_secs(17), &status, moved, at(17)),
            [
                "[ 17.0s] 13 migrate-volumes        Succeeded  took 9s     machines 5/7, nodes 5/7 on target; volumes 5/5 moved",
                "[ 17.0s] 14 scale-down-source      Running    for 0s      machines 5/7, nodes 5/7 on target",
            ]
        );
    }

    #[test]
    fn a_retry_is_a_change() {
        let mut tracker = Tracker::default();
        let mut s = step(7, "update-infra", StepState::Failed, 0, Some(1));
        let mut status = VSphereMigrationInfraStatus {
            steps: vec![s.clone()],
            ..Default::default()
        };
        assert_eq!(
            tracker.update(Duration::ZERO, &status, None, at(1)).len(),
            1
        );
        s.attempt = 2;
        s.state = StepState::Running;
        s.finished_at = None;
        status.steps = vec![s];
        let lines = tracker.update(Duration::ZERO, &status, None, at(5));
        assert_eq!(
            lines,
            ["[  0.0s] 07 update-infra           Running    for 5s (attempt 2)"]
        );
    }
}
