//! The shipped Prometheus alerting rules (`grafana/prometheus/weir-rules.yml`): `promtool
//! check rules` accepts them, their unit tests (`weir-rules.test.yml`) pass, and every
//! metric they use is one Weir exports.

use std::path::PathBuf;
use std::process::Command;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../grafana/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool is missing: run the tests with scripts/test.sh (it installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_pass_promtool_and_use_exported_metrics() {
    let checked = promtool(&["check", "rules", "weir-rules.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    promtool(&["test", "rules", "weir-rules.test.yml"]);
    let rules = std::fs::read_to_string(rules_dir().join("weir-rules.yml")).unwrap();
    let exported = [
        include_str!("../src/metrics.rs"),
        include_str!("../src/process_metrics.rs"),
    ]
    .concat();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("weir_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            exported.contains(&format!("\"{name}\"")),
            "{name} is used by a rule but not exported"
        );
    }
}
