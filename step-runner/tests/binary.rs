//! The `vmi-step` binary as a Job runs it.

use std::process::Command;

fn vmi_step(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmi-step"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn a_missing_undo_fails_and_says_so_last() {
    let output = vmi_step(&["remove-source", "--undo", "--vmi", "vmi-system/m1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("step remove-source has no undo"),
        "last line: {last}\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "logs go to stderr");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let output = vmi_step(&[
        "--log-format",
        "json",
        "preflight",
        "--undo",
        "--vmi",
        "vmi-system/m1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("step preflight has no undo"),
        "{last}"
    );
    assert_eq!(last["vmi"], "vmi-system/m1");
}

#[test]
fn a_bad_command_line_exits_2() {
    let output = vmi_step(&["preflight", "--vmi", "no-slash"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("<namespace>/<name>"));
}

#[test]
fn without_a_cluster_a_step_says_how_to_name_one() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vmi-step"))
        .args(["disable-cvo", "--vmi", "vmi-system/m1"])
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", home.path().join("missing"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("pass --kubeconfig"), "last line: {last}");
}
