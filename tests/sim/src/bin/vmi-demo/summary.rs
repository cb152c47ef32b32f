//! The summary printed at the end of the demo (and kept as `summary.txt`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use vmi_api::VSphereMigrationInfraStatus;
use vmi_sim::migration::MachineProgress;
use vmi_sim::secrets_scan::ScanReport;

use crate::progress::{between, clock, name, seconds};
use crate::round_trips::RoundTrips;
use crate::volumes::VolumesReport;

/// Everything the summary shows.
pub struct Summary<'a> {
    /// The pipeline's step names, in order.
    pub pipeline: &'a [String],
    /// The vmi's final status.
    pub status: &'a VSphereMigrationInfraStatus,
    /// From the vmi's creation to its final phase.
    pub took: Duration,
    /// vCenter round trips per step index.
    pub round_trips: &'a BTreeMap<i32, RoundTrips>,
    /// (server, role) of the vCenters, to name them.
    pub vcenters: &'a [(String, String)],
    /// Changes of cloud-provider-config (node rollouts).
    pub rollouts: usize,
    /// Control plane machines replaced.
    pub replacements: u64,
    /// What the control plane machine set operator refused to act on.
    pub cpms_problems: &'a [String],
    /// VMs the machine API cloned and destroyed.
    pub vms: (u64, u64),
    /// Time the cluster-version operator was down, and how many times.
    pub cvo_down: (Duration, usize),
    /// Machines and Nodes on the target at the end.
    pub machines: Option<MachineProgress>,
    /// The volumes step 13 moved and their checks; `None` with
    /// `--no-volumes`.
    pub volumes: Option<&'a VolumesReport>,
    /// The secrets scan, or why it could not run.
    pub scan: &'a Result<ScanReport, String>,
    /// Where the artifacts are.
    pub artifacts: &'a Path,
}

impl Summary<'_> {
    fn role(&self, server: &str) -> String {
        self.vcenters
            .iter()
            .find(|(s, _)| s == server)
            .map(|(_, role)| role.clone())
            .unwrap_or_else(|| server.to_owned())
    }

    /// The summary as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let status = self.status;
        let path = status
            .migration_path
            .as_ref()
            .map(|p| format!(" on the {:?} path", p.path))
            .unwrap_or_default();
        let _ = writeln!(out, "== vmi demo: summary ==");
        let _ = writeln!(
            out,
            "{:<28}{}{path} after {}",
            "phase",
            name(status.phase),
            clock(self.took)
        );
        let _ = writeln!(
            out,
            "{:<28}{:<26}{:<11}{:<8}vCenter round trips",
            "steps", "", "state", "took"
        );
        for (index, step_name) in self.pipeline.iter().enumerate() {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            let step = status.steps.iter().find(|s| s.index == index);
            let (state, took) = match step {
                Some(s) => (
                    format!("{:?}", s.state),
                    match (&s.started_at, &s.finished_at) {
                        (Some(a), Some(b)) => seconds(between(&a.0, &b.0)),
                        _ => "-".into(),
                    },
                ),
                None => ("-".into(), "-".into()),
            };
            let trips = self
                .round_trips
                .get(&index)
                .map(|t| t.describe(|s| self.role(s)))
                .unwrap_or_else(|| {
                    if step.is_some() {
                        "0".into()
                    } else {
                        "-".into()
                    }
                });
            let _ = writeln!(
                out,
                "{:<28}{index:02} {step_name:<23}{state:<11}{took:<8}{trips}",
                ""
            );
        }
        let mut all = RoundTrips::default();
        for trips in self.round_trips.values() {
            all.add(trips);
        }
        let _ = writeln!(
            out,
            "{:<28}{} (cloud-provider-config edits; each rolls every node)",
            "node rollouts", self.rollouts
        );
        let _ = writeln!(
            out,
            "{:<28}{}",
            "control-plane replacements", self.replacements
        );
        for problem in self.cpms_problems {
            let _ = writeln!(out, "{:<28}  refused: {problem}", "");
        }
        let _ = writeln!(
            out,
            "{:<28}{} cloned, {} destroyed",
            "VMs (machine API)", self.vms.0, self.vms.1
        );
        let (down, periods) = self.cvo_down;
        let _ = writeln!(
            out,
            "{:<28}{:.2} min ({periods} time{})",
            "CVO down",
            down.as_secs_f64() / 60.0,
            if periods == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "{:<28}{}",
            "vCenter round trips",
            all.describe(|s| self.role(s))
        );
        if let Some(machines) = self.machines {
            let _ = writeln!(out, "{:<28}{machines}", "moved");
        }
        match self.volumes {
            Some(volumes) => render_volumes(&mut out, volumes),
            None => {
                let _ = writeln!(out, "{:<28}none seeded (--no-volumes)", "volumes");
            }
        }
        match self.scan {
            Ok(scan) => {
                let _ = writeln!(out, "{:<28}{}", "secrets scan", scan.headline());
                for hit in &scan.hits {
                    let _ = writeln!(out, "{:<28}  {hit}", "");
                }
            }
            Err(err) => {
                let _ = writeln!(out, "{:<28}could not run: {err}", "secrets scan");
            }
        }
        let _ = writeln!(out, "{:<28}{}", "artifacts", self.artifacts.display());
        out
    }
}

/// The volumes part: how many moved in which mode and how long step 13
/// took, then one line per volume (what was checked, or what failed), then
/// the workloads.
fn render_volumes(out: &mut String, report: &VolumesReport) {
    let counter = report
        .counter
        .map(|c| format!("status.progress.volumes {}/{}", c.done, c.total))
        .unwrap_or_else(|| "no status.progress.volumes".into());
    let head = if report.checked {
        let concurrency = report
            .concurrency
            .map(|c| format!(", concurrency {c}"))
            .unwrap_or_default();
        let took = report
            .step_took
            .map(|d| format!(" in {}", seconds(d)))
            .unwrap_or_default();
        format!(
            "{} of {} moved by step 13{took} ({} mode{concurrency}); {counter}",
            report.moved(),
            report.volumes.len(),
            report.mode
        )
    } else {
        format!(
            "{} not checked: the migration did not succeed; {counter}",
            report.volumes.len()
        )
    };
    let _ = writeln!(out, "{:<28}{head}", "volumes");
    for volume in &report.volumes {
        let what = if !report.checked {
            String::new()
        } else if volume.problems.is_empty() {
            format!(
                "original {} on the target (sha256 {}…), source disk kept",
                human_bytes(volume.bytes),
                volume.sha256.get(..12).unwrap_or(&volume.sha256)
            )
        } else {
            format!("FAILED: {}", volume.problems.join("; "))
        };
        let line = format!("{:<16} {:<10}{what}", volume.claim, volume.state);
        let _ = writeln!(out, "{:<28}  {}", "", line.trim_end());
    }
    if report.checked {
        let workloads = report.workloads.join(", ");
        let text = match &report.workloads_ready {
            Ok(()) => format!("back and Ready: {workloads}"),
            Err(err) => format!("NOT back: {err}"),
        };
        let _ = writeln!(out, "{:<28}{text}", "workloads");
    }
}

fn human_bytes(bytes: u64) -> String {
    vmi_sim::secrets_scan::human_bytes(usize::try_from(bytes).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use vmi_api::migration::Count;
    use vmi_api::migration::{MigrationPath, MigrationPathDecision};
    use vmi_api::{Phase, StepState, StepStatus};
    use vmi_sim::secrets_scan::{Encoding, Hit};

    use super::*;
    use crate::volumes::VolumeCheck;

    fn at(s: i64) -> Option<Time> {
        Some(Time(Timestamp::from_second(1_800_000_000 + s).unwrap()))
    }

    #[test]
    fn the_summary_shows_steps_disruption_trips_and_the_scan() {
        let mut preflight = StepStatus::started(0, "preflight", "vmi-step-00-preflight", 1);
        preflight.state = StepState::Succeeded;
        (preflight.started_at, preflight.finished_at) = (at(0), at(3));
        let mut cvo = StepStatus::started(1, "disable-cvo", "vmi-step-01-disable-cvo", 1);
        cvo.state = StepState::Failed;
        (cvo.started_at, cvo.finished_at) = (at(3), at(65));
        let status = VSphereMigrationInfraStatus {
            phase: Some(Phase::Failed),
            migration_path: Some(MigrationPathDecision {
                path: MigrationPath::Legacy,
                reason: "r".into(),
            }),
            steps: vec![preflight, cvo],
            ..Default::default()
        };
        let mut trips = RoundTrips::default();
        trips.by_server.insert("127.0.0.10".into(), 12);
        trips.by_server.insert("127.0.0.11".into(), 22);
        let round_trips = BTreeMap::from([(0, trips)]);
        let scan = Ok(ScanReport {
            texts: 3,
            bytes: 2048,
            hits: vec![Hit {
                secret: "vCenter password (target vCenter 127.0.0.11)".into(),
                encoding: Encoding::Plain,
                location: "log of pod p".into(),
                line: 4,
            }],
            ..Default::default()
        });
        let pipeline = [
            "preflight".to_owned(),
            "disable-cvo".into(),
            "allow-multi-vcenter".into(),
        ];
        let summary = Summary {
            pipeline: &pipeline,
            status: &status,
            took: Duration::from_secs(70),
            round_trips: &round_trips,
            vcenters: &[
                ("127.0.0.10".into(), "source".into()),
                ("127.0.0.11".into(), "target".into()),
            ],
            rollouts: 2,
            replacements: 3,
            cpms_problems: &["unknown failure domain x".to_owned()],
            vms: (5, 5),
            cvo_down: (Duration::from_secs(90), 1),
            machines: None,
            volumes: None,
            scan: &scan,
            artifacts: Path::new("/tmp/a"),
        };
        let text = summary.render();
        let expected = "\
== vmi demo: summary ==
phase                       Failed on the Legacy path after 1m10s
steps                                                 state      took    vCenter round trips
                            00 preflight              Succeeded  3s      34 (source 12, target 22)
                            01 disable-cvo            Failed     1m02s   0
                            02 allow-multi-vcenter    -          -       -
node rollouts               2 (cloud-provider-config edits; each rolls every node)
control-plane replacements  3
                              refused: unknown failure domain x
VMs (machine API)           5 cloned, 5 destroyed
CVO down                    1.50 min (1 time)
vCenter round trips         34 (source 12, target 22)
volumes                     none seeded (--no-volumes)
secrets scan                1 HIT(S): 3 texts, 2.0 KiB scanned for no known secrets and secret-shaped text
                              vCenter password (target vCenter 127.0.0.11): log of pod p, line 4
artifacts                   /tmp/a
";
        assert_eq!(text, expected, "\n{text}");
    }

    fn volumes(checked: bool, problems: Vec<String>) -> VolumesReport {
        let volume = |claim: &str, pv: &str, sha: &str, problems: Vec<String>| VolumeCheck {
            claim: claim.into(),
            pv: pv.into(),
            state: if checked { "Complete" } else { "Quiesced" }.into(),
            target_disk: checked.then(|| format!("{pv}-target")),
            bytes: 262_144,
            sha256: sha.into(),
            problems,
        };
        VolumesReport {
            mode: "Copy".into(),
            concurrency: Some(2),
            counter: Some(Count {
                done: if checked { 2 } else { 0 },
                total: 2,
            }),
            step_took: checked.then_some(Duration::from_secs(9)),
            volumes: vec![
                volume(
                    "apps/web-data",
                    "pvc-1",
                    "3f9a0c12b4e5d6f7a8b9c0d1e2f3",
                    vec![],
                ),
                volume("apps/data-db-0", "pvc-2", "0011223344556677", problems),
            ],
            workloads: vec![
                "Deployment apps/web (1 replica)".into(),
                "StatefulSet apps/db (3 replicas)".into(),
            ],
            workloads_ready: if checked {
                Ok(())
            } else {
                Err("not checked".into())
            },
            checked,
        }
    }

    fn volumes_part(report: &VolumesReport) -> String {
        let mut out = String::new();
        render_volumes(&mut out, report);
        out
    }

    #[test]
    fn the_volumes_part_shows_mode_checks_workloads_and_step_13() {
        let expected = "\
volumes                     2 of 2 moved by step 13 in 9s (Copy mode, concurrency 2); status.progress.volumes 2/2
                              apps/web-data    Complete  original 256.0 KiB on the target (sha256 3f9a0c12b4e5…), source disk kept
                              apps/data-db-0   Complete  original 256.0 KiB on the target (sha256 001122334455…), source disk kept
workloads                   back and Ready: Deployment apps/web (1 replica), StatefulSet apps/db (3 replicas)
";
        let text = volumes_part(&volumes(true, vec![]));
        assert_eq!(text, expected, "\n{text}");

        let mut failed = volumes(
            true,
            vec![
                "the target disk d does not hold the original bytes".into(),
                "the claim is Lost, not Bound".into(),
            ],
        );
        failed.workloads_ready = Err("statefulset apps/db (2 of 3 Ready)".into());
        let text = volumes_part(&failed);
        assert!(
            text.contains(
                "\n                              apps/data-db-0   Complete  FAILED: the target disk d does not \
                 hold the original bytes; the claim is Lost, not Bound\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "workloads                   NOT back: statefulset apps/db (2 of 3 Ready)\n"
            ),
            "{text}"
        );

        let text = volumes_part(&volumes(false, vec![]));
        assert_eq!(
            text,
            "\
volumes                     2 not checked: the migration did not succeed; status.progress.volumes 0/2
                              apps/web-data    Quiesced
                              apps/data-db-0   Quiesced
",
            "\n{text}"
        );
    }
}
