//! The shipped pipeline file, and what the loader says about broken ones.

use vmi_api::Step;
use vmi_api::pipeline::{Pipeline, PipelineError, PipelineProblem};

fn problems(yaml: &str) -> Vec<PipelineProblem> {
    match Pipeline::from_yaml(yaml, "test.yaml") {
        Err(PipelineError::Invalid { problems, .. }) => problems,
        other => panic!("expected an invalid pipeline, got {other:?}"),
    }
}

/// A valid two-step pipeline with `{0}`..`{1}` replaced by step fields.
fn two_steps(first: &str, second: &str) -> String {
    format!(
        "name: test\ndescription: a test pipeline\nsteps:\n  - {{index: 0, name: sleep, description: sleeps, timeoutSeconds: 60, retries: 0, reversible: false{first}}}\n  - {{index: 1, name: succeed, description: succeeds, timeoutSeconds: 120, retries: 1, reversible: true{second}}}\n"
    )
}

#[test]
fn the_shipped_pipeline_lists_the_seventeen_steps_in_order() {
    let pipeline = Pipeline::vcenter_migration().expect("the shipped pipeline is valid");
    let names: Vec<_> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, Step::ALL.map(Step::name));
    let update_infra = pipeline.step("update-infra").unwrap();
    assert_eq!(update_infra.index, 7);
    assert_eq!(update_infra.job_name(), "vmi-step-07-update-infra");
    assert_eq!(
        update_infra.rollback_job_name(),
        "vmi-rollback-07-update-infra"
    );
    assert_eq!(pipeline.progress_label(update_infra), "7/17 update-infra");
    assert_eq!(pipeline.steps[0].job_name(), "vmi-step-00-preflight");
    assert_eq!(pipeline.steps[16].job_name(), "vmi-step-16-restore-cvo");
}

#[test]
fn rollback_stops_at_remove_source() {
    let pipeline = Pipeline::vcenter_migration().unwrap();
    let points: Vec<_> = pipeline
        .steps
        .iter()
        .filter(|s| s.point_of_no_return)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(points, ["remove-source"]);
    // Preflight changes nothing, so it has nothing to undo.
    assert!(!pipeline.step("preflight").unwrap().reversible);
    assert!(pipeline.step("update-infra").unwrap().reversible);
}

#[test]
fn every_job_name_is_a_valid_label_value() {
    let pipeline = Pipeline::vcenter_migration().unwrap();
    for step in &pipeline.steps {
        for name in [step.job_name(), step.rollback_job_name()] {
            assert!(name.len() <= 63, "{name} is longer than 63 characters");
        }
    }
}

#[test]
fn a_valid_test_pipeline_loads() {
    let pipeline = Pipeline::from_yaml(&two_steps("", ", needs: [sleep]"), "test.yaml").unwrap();
    assert_eq!(pipeline.steps[1].needs, ["sleep"]);
    assert_eq!(pipeline.steps[1].timeout().as_secs(), 120);
}

#[test]
fn a_test_pipeline_is_not_the_migration() {
    let err = Pipeline::migration_from_yaml(&two_steps("", ""), "test.yaml").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("entry 0 is \"sleep\" but vmi's migration runs \"preflight\" there"),
        "{message}"
    );
    assert!(message.contains("entry 16 is \"<missing>\""), "{message}");
}

#[test]
fn duplicate_names_are_refused() {
    let yaml = two_steps("", "").replace("name: succeed", "name: sleep");
    assert_eq!(
        problems(&yaml),
        [PipelineProblem::DuplicateName {
            name: "sleep".into(),
            first: 0,
            second: 1
        }]
    );
}

#[test]
fn indexes_must_count_from_zero_without_gaps() {
    let yaml = two_steps("", "").replace("index: 1", "index: 2");
    assert_eq!(
        problems(&yaml),
        [PipelineProblem::IndexOutOfOrder {
            name: "succeed".into(),
            expected: 1,
            found: 2
        }]
    );
}

#[test]
fn timeouts_must_be_sane() {
    let too_short = two_steps("", "").replace("timeoutSeconds: 60", "timeoutSeconds: 0");
    assert!(matches!(
        problems(&too_short)[..],
        [PipelineProblem::TimeoutOutOfRange { seconds: 0, .. }]
    ));
    // A test pipeline may use a few seconds; the migration pipeline may not.
    let short = two_steps("", "").replace("timeoutSeconds: 60", "timeoutSeconds: 5");
    assert!(Pipeline::from_yaml(&short, "test.yaml").is_ok());
    let too_long = two_steps("", "").replace("timeoutSeconds: 120", "timeoutSeconds: 999999");
    assert!(matches!(
        problems(&too_long)[..],
        [PipelineProblem::TimeoutOutOfRange {
            seconds: 999999,
            ..
        }]
    ));
}

#[test]
fn retries_are_bounded() {
    let yaml = two_steps("", "").replace("retries: 1", "retries: 50");
    assert!(matches!(
        problems(&yaml)[..],
        [PipelineProblem::TooManyRetries { retries: 50, .. }]
    ));
}

#[test]
fn names_must_fit_a_job_name() {
    let upper = two_steps("", "").replace("name: sleep", "name: Sleep");
    assert!(matches!(
        problems(&upper)[..],
        [PipelineProblem::InvalidName { .. }]
    ));
    let long = two_steps("", "").replace("name: sleep", &format!("name: {}", "a".repeat(48)));
    assert!(matches!(
        problems(&long)[..],
        [PipelineProblem::InvalidName { max: 47, .. }]
    ));
    let trailing_dash = two_steps("", "").replace("name: sleep", "name: sleep-");
    assert!(matches!(
        problems(&trailing_dash)[..],
        [PipelineProblem::InvalidName { .. }]
    ));
}

#[test]
fn needs_must_name_earlier_steps() {
    let yaml = two_steps(", needs: [succeed]", "");
    assert_eq!(
        problems(&yaml),
        [PipelineProblem::NeedNotEarlier {
            name: "sleep".into(),
            need: "succeed".into()
        }]
    );
}

#[test]
fn one_irreversible_point_of_no_return_at_most() {
    let reversible = two_steps("", ", pointOfNoReturn: true");
    assert!(matches!(
        problems(&reversible)[..],
        [PipelineProblem::BadPointOfNoReturn { .. }]
    ));
    let two = two_steps(", pointOfNoReturn: true", ", pointOfNoReturn: true")
        .replace("reversible: true", "reversible: false");
    assert!(matches!(
        problems(&two)[..],
        [PipelineProblem::BadPointOfNoReturn {
            reason: "a pipeline has at most one",
            ..
        }]
    ));
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = two_steps("", "")
        .replace("timeoutSeconds: 60", "timeoutSeconds: 0")
        .replace("retries: 1", "retries: 11")
        .replace("description: sleeps", "description: ' '");
    assert_eq!(problems(&yaml).len(), 3, "{:?}", problems(&yaml));
}

#[test]
fn an_empty_pipeline_is_refused() {
    let problems = problems("name: test\ndescription: nothing\nsteps: []\n");
    assert_eq!(problems, [PipelineProblem::NoSteps]);
}

#[test]
fn a_misspelled_field_is_a_parse_error_with_its_line() {
    let yaml = two_steps("", "").replace("timeoutSeconds: 120", "timeout: 120");
    match Pipeline::from_yaml(&yaml, "broken.yaml") {
        Err(err @ PipelineError::Parse { .. }) => {
            let message = err.to_string();
            assert!(
                message.starts_with("pipeline broken.yaml: cannot read it"),
                "{message}"
            );
            assert!(message.contains("timeout"), "{message}");
            assert!(
                message.contains("line 5") || message.contains("5:"),
                "the line is named: {message}"
            );
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn the_error_lists_problems_one_per_line() {
    let yaml = two_steps("", "")
        .replace("retries: 1", "retries: 13")
        .replace("retries: 0", "retries: 12");
    let message = Pipeline::from_yaml(&yaml, "t.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "pipeline t.yaml is invalid:\n  - step \"sleep\" retries 12 is more than 10\n  - step \"succeed\" retries 13 is more than 10"
    );
}

#[test]
fn the_plan_is_the_read_only_prefix() {
    let pipeline = Pipeline::vcenter_migration().unwrap();
    assert!(pipeline.steps[0].read_only, "preflight changes nothing");
    assert_eq!(pipeline.planning_steps(), 1);
    assert!(pipeline.steps[1..].iter().all(|s| !s.read_only));
}

#[test]
fn a_read_only_step_cannot_be_undone_or_final() {
    let yaml = two_steps("", ", readOnly: true");
    assert_eq!(
        problems(&yaml),
        [PipelineProblem::BadReadOnly {
            name: "succeed".into(),
            what: "reversible"
        }]
    );
}

#[test]
fn a_migration_step_needs_at_least_a_minute() {
    let shipped = vmi_api::pipeline::VCENTER_MIGRATION_YAML.replacen(
        "timeoutSeconds: 900",
        "timeoutSeconds: 5",
        1,
    );
    let err = Pipeline::migration_from_yaml(&shipped, "tuned.yaml").unwrap_err();
    assert!(
        err.to_string()
            .contains("step \"preflight\" timeoutSeconds 5 is below the 60 s"),
        "{err}"
    );
}
