//! The pipeline as a table for people: what runs, in which Job, for how long.

use std::fmt::Write;

use vmi_api::Pipeline;

/// One line per step: index, name, Job, deadline, retries, reversibility.
pub fn render(pipeline: &Pipeline) -> String {
    let mut out = format!("{}: {}\n", pipeline.name, pipeline.description);
    let name_width = pipeline
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let job_width = name_width + "vmi-step-00-".len();
    let _ = writeln!(
        out,
        "NN  {:name_width$}  {:job_width$}  TIMEOUT  RETRIES  UNDO",
        "STEP", "JOB"
    );
    for step in &pipeline.steps {
        let undo = match (step.reversible, step.point_of_no_return) {
            (_, true) => "no (point of no return)",
            (true, false) => "yes",
            (false, false) => "no",
        };
        let _ = writeln!(
            out,
            "{:02}  {:name_width$}  {:job_width$}  {:>7}  {:>7}  {undo}",
            step.index,
            step.name,
            step.job_name(),
            human_duration(step.timeout_seconds),
            step.retries,
        );
    }
    out
}

/// `900` → `15m`, `10800` → `3h`, `90` → `90s`.
fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_table_names_every_job() {
        let table = render(&Pipeline::vcenter_migration().unwrap());
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 17);
        assert!(lines[1].starts_with("NN  STEP"), "{}", lines[1]);
        let update_infra = lines.iter().find(|l| l.starts_with("07")).unwrap();
        assert!(update_infra.contains("update-infra"), "{update_infra}");
        assert!(
            update_infra.contains("vmi-step-07-update-infra"),
            "{update_infra}"
        );
        assert!(update_infra.contains("10m"), "{update_infra}");
        assert!(lines.last().unwrap().contains("vmi-step-16-restore-cvo"));
        assert!(table.contains("no (point of no return)"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(10800), "3h");
        assert_eq!(human_duration(90), "90s");
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;

    #[test]
    fn docs_pipeline_md_shows_the_current_table() {
        let docs = include_str!("../../docs/pipeline.md");
        let table = render(&Pipeline::vcenter_migration().unwrap());
        assert!(
            docs.contains(&table),
            "docs/pipeline.md is stale: paste the output of `cargo run -q -p vmi-orchestrator -- pipeline` into it"
        );
    }
}
