//! `logflow topics create` on a real broker: exactly the spec's output, dead-letter, late and
//! alerts topics, and nothing changed by a second run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::bin;
use common::kafka::Broker;

#[test]
fn topics_create_makes_exactly_the_specs_topics_once() {
    let b = Broker::start("kafka-topics");
    // A topic of the user's, untouched by logflow.
    b.topic("logs", 2);
    let create = |extra: &[&str]| {
        let out = bin()
            .args([
                "topics",
                "create",
                "dataflows/log-analysis.toml",
                "--brokers",
                &b.address,
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = create(&["--partitions", "3"]);
    // The spec's topics, from `check` (its analyses and side outputs).
    let check = common::run_ok(&[
        "check",
        "dataflows/log-analysis.toml",
        "--brokers",
        &b.address,
    ]);
    let check = String::from_utf8_lossy(&check.stdout);
    let mut want: Vec<String> = check
        .lines()
        .find_map(|l| l.strip_prefix("topics: "))
        .expect("check names the topics")
        .split(' ')
        .map(String::from)
        .collect();
    want.sort();
    assert!(want.len() >= 13, "{check}");
    assert!(want.contains(&"log-analysis.dead-letter".to_string()));
    assert!(want.contains(&"log-analysis.late".to_string()));
    assert!(want.contains(&"log-analysis.alerts".to_string()));
    let mut created: Vec<String> = first
        .lines()
        .map(|l| {
            l.strip_prefix("created ")
                .expect("only created topics")
                .to_string()
        })
        .collect();
    created.sort();
    assert_eq!(created, want);

    let mut on_broker: Vec<String> = want.iter().map(|t| format!("{t}:3")).collect();
    on_broker.push("logs:2".into());
    on_broker.sort();
    let listed = |b: &Broker| -> Vec<String> {
        b.client(&["topics", &b.address])
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(listed(&b), on_broker);

    // Again, with other settings: every topic exists and is left as it is.
    let second = create(&["--partitions", "1"]);
    let mut kept: Vec<String> = second
        .lines()
        .map(|l| {
            l.strip_prefix("exists ")
                .expect("only existing topics")
                .to_string()
        })
        .collect();
    kept.sort();
    assert_eq!(kept, want);
    assert_eq!(listed(&b), on_broker);

    // `run --create-topics`: an exactly-once job's topics (its commits topic too), made by the
    // run itself, which then writes to them; existing ones left alone (`logs` keeps its 2).
    let dir = common::tmpdir("topics-run");
    let spec = dir.join("made.toml");
    std::fs::write(
        &spec,
        "name = \"made\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
         [sink]\ndelivery = \"exactly_once\"\n[[analysis]]\nname = \"made_counts\"\n\
         window = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| b.run_to_end(&spec, extra);
    // Without the flag a missing output topic stops the run before it starts.
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(listed(&b), on_broker);
    let made = run(&["--create-topics"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut with_made = on_broker.clone();
    with_made.extend(
        [
            "made.commits:1",
            "made.dead-letter:1",
            "made.late:1",
            "made_counts:1",
        ]
        .map(String::from),
    );
    with_made.sort();
    assert_eq!(listed(&b), with_made);
    // Again: nothing changes.
    let again = run(&["--create-topics"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(listed(&b), with_made);
}
