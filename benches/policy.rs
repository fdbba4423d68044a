//! Policy decision time: a 200-rule policy, a request with 10 findings,
//! the matching rule last — the worst case for first-match evaluation —
//! beside the detection scan of the same 4 KiB prompt, so the decision's
//! share of the inspection cost is visible.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use lantern::catalog::App;
use lantern::detect::{Engine, Severity};
use lantern::policy::{Action, Found, Known, Policy, Subject};

fn policy_200(detectors: &[String]) -> Policy {
    let mut yaml = String::from("default: log\nrules:\n");
    for i in 0..199 {
        yaml.push_str(&format!(
            "  - {{name: r{i}, when: {{users: [user{i}], apps: {{ids: [openai-api]}}, detectors: [\"pii.*\"]}}, action: block}}\n"
        ));
    }
    yaml.push_str(
        "  - {name: last, when: {detectors: [\"secret.*\"], min_severity: high}, action: block}\n",
    );
    let known = Known {
        app: &|_: &str| true,
        detectors,
    };
    Policy::from_yaml(Path::new("bench.yaml"), &yaml, &known).expect("valid policy")
}

fn bench(c: &mut Criterion) {
    let engine = Engine::bundled().expect("bundled rules");
    let ids: Vec<String> = engine.detector_ids().map(String::from).collect();
    let policy = policy_200(&ids);
    let app = App {
        id: "openai-api".into(),
        name: "OpenAI API".into(),
        vendor: "OpenAI".into(),
        category: "api".into(),
        hosts: vec![],
        sanctioned: false,
        inspect: true,
    };
    let names = [
        "pii.email",
        "pii.phone",
        "pii.ip_address",
        "pii.iban",
        "pii.us_ssn",
        "pii.credit_card",
        "confidential.marker",
        "code.source",
        "secret.jwt",
        "secret.aws_access_key",
    ];
    let findings: Vec<Found<'_>> = names
        .iter()
        .map(|d| Found {
            detector: d,
            severity: Severity::High,
            count: 1,
        })
        .collect();
    let groups = vec!["eng".to_string()];
    let subject = Subject {
        app: &app,
        user: "someone",
        groups: &groups,
        findings: &findings,
        req_bytes: 4096,
    };
    assert_eq!(
        policy.evaluate(&subject).action,
        Action::Block,
        "the last rule must match"
    );

    let mut prompt = String::new();
    while prompt.len() < 4096 {
        prompt
            .push_str("Please review this deployment plan and summarise the risks for the team. ");
    }
    let mut group = c.benchmark_group("policy");
    group.bench_function("evaluate_200_rules_10_findings", |b| {
        b.iter(|| black_box(policy.evaluate(black_box(&subject))).action)
    });
    group.bench_function("scan_4k_prompt", |b| {
        b.iter(|| engine.scan(black_box(prompt.as_bytes())).len())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
