//! The compiler's tests: specs in, plans (or errors naming the field) out.

use super::*;
use crate::record::Field;
use crate::spec::{parse_spec, SpecSource};
use crate::Error;

fn compile(text: &str) -> Result<JobPlan, Error> {
    let src = SpecSource {
        file: "t.toml",
        text,
    };
    JobPlan::compile(&parse_spec(&src)?, &src)
}

const HEAD: &str = "name = \"j\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n";

#[test]
fn exactly_once_delivery_needs_a_kafka_sink_and_append_mode() {
    let analysis =
        "[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
    let sink = |kind: &str, delivery: &str| {
        format!("{HEAD}[sink]\nkind = \"{kind}\"\ndir = \"o\"\ndelivery = \"{delivery}\"\n")
    };
    let p = compile(&format!("{}{analysis}", sink("kafka", "exactly_once"))).unwrap();
    assert!(matches!(
        p.sink,
        SinkConfig::Kafka(KafkaSinkConfig {
            exactly_once: true,
            ..
        })
    ));
    assert!(p.topics().contains(&"j.commits".to_string()));
    let p = compile(&format!("{}{analysis}", sink("kafka", "at_least_once"))).unwrap();
    assert!(matches!(
        p.sink,
        SinkConfig::Kafka(KafkaSinkConfig {
            exactly_once: false,
            ..
        })
    ));
    let e = compile(&format!("{}{analysis}", sink("files", "exactly_once")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sink.delivery") && e.contains("kafka sink"),
        "{e}"
    );
    let e = compile(&format!("{}{analysis}", sink("kafka", "twice")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown delivery `twice`"), "{e}");
    let update = format!("{analysis}mode = \"update\"\n");
    let e = compile(&format!("{}{update}", sink("kafka", "exactly_once")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("append mode") && e.contains("`a`"), "{e}");
}

#[test]
fn shares_one_pass_between_analyses_with_the_same_grouping() {
    let text = format!(
        "{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as n\", \"avg(response_time) as rt\"]\n\
         [[analysis]]\nname = \"b\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as total\", \"count_if(status_code >= 400) * 100.0 / total as rate\"]\n"
    );
    let plan = compile(&text).unwrap();
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(plan.nodes[0].accs.len(), 3, "count() is shared");
    assert_eq!(plan.analyses[1].columns, vec!["service", "total", "rate"]);
    assert_eq!(plan.granularity_ms, 60_000);
    let used = plan.used_fields();
    for f in [Field::Service, Field::ResponseTime, Field::StatusCode] {
        assert!(used.contains(f), "{f:?}");
    }
    assert!(!used.contains(Field::Message));
}

#[test]
fn errors_name_line_and_field() {
    let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1q\" }}\nselect = [\"count() as n\"]\n");
    let err = compile(&text).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:8:"), "{err}");
    assert!(
        err.contains("window.size") && err.contains("unknown unit"),
        "{err}"
    );

    let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as n\", \"avg(nope) as x\"]\n");
    let err = compile(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("t.toml:9:") && err.contains("unknown field `nope`"),
        "{err}"
    );

    let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"response_time as x\"]\n");
    let err = compile(&text).unwrap_err().to_string();
    assert!(err.contains("inside an aggregate"), "{err}");

    let text = format!("{HEAD}[[analysis]]\nname = \"a\"\nfrom = \"zz\"\n");
    let err = compile(&text).unwrap_err().to_string();
    assert!(err.contains("unknown analysis `zz`"), "{err}");
}

#[test]
fn output_modes_and_running_state() {
    let upd = "[[analysis]]\nname = \"u\"\nmode = \"update\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
    let app =
        "[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
    let plan = compile(&format!("{HEAD}{upd}{app}")).unwrap();
    assert_eq!(plan.nodes.len(), 2, "update and append never share a pass");
    assert!(plan.nodes[0].update && !plan.nodes[1].update);
    assert_eq!(
        plan.granularity_ms, 10_000,
        "the default trigger refines progress"
    );

    let late = "[[analysis]]\nname = \"l\"\ninput = \"late\"\nmode = \"update\"\ngroup_by = [\"user_id\"]\nselect = [\"count() as n\"]\n";
    let plan = compile(&format!("{HEAD}{app}{late}")).unwrap();
    let l = &plan.analyses[1];
    assert!(l.windowless && l.update);
    assert_eq!(plan.nodes[1].input, NodeInput::Late);
    assert_eq!(plan.granularity_ms, 10_000);

    for (text, want) in [
        (
            "[[analysis]]\nname = \"x\"\nselect = [\"count() as n\"]\n",
            "without a window, `mode = \"update\"`",
        ),
        (
            "[[analysis]]\nname = \"x\"\nmode = \"upsert\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
            "unknown output mode `upsert`",
        ),
        (
            "[[analysis]]\nname = \"x\"\ntrigger = \"5s\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
            "`trigger` applies to `mode = \"update\"` or `\"complete\"` only",
        ),
        (
            "[[analysis]]\nname = \"x\"\ninput = \"late\"\nmode = \"update\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n",
            "no `window`",
        ),
        (
            "[[analysis]]\nname = \"x\"\nmode = \"update\"\ndelay = \"1m\"\nselect = [\"count() as n\"]\n",
            "`delay` applies to windows",
        ),
    ] {
        let err = compile(&format!("{HEAD}{text}")).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let err = compile(&format!(
        "{HEAD}{upd}[[analysis]]\nname = \"d\"\nfrom = \"u\"\nhaving = \"n > 1\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("`u` is in update mode"), "{err}");
}

#[test]
fn session_windows_compile_to_a_session_node_with_its_bounds() {
    let sess = "[[analysis]]\nname = \"s\"\nwindow = { session_gap = \"30m\" }\ngroup_by = [\"user_id\"]\nselect = [\"count() as n\", \"max(timestamp) - min(timestamp) as ms\"]\n";
    let plan = compile(&format!("{HEAD}{sess}")).unwrap();
    let node = &plan.nodes[0];
    assert_eq!(
        node.windows,
        crate::time::window::Windows::session(1_800_000)
    );
    // The bounds in slots 0 and 1; the analysis's own min/max of the time share them.
    let bound = |func| AccSpec {
        func,
        arg: Some(crate::spec::expr::Expr::Field(Field::Timestamp)),
    };
    assert_eq!(
        node.accs,
        vec![
            bound(AggFunc::Min),
            bound(AggFunc::Max),
            AccSpec {
                func: AggFunc::Count,
                arg: None
            }
        ]
    );
    assert!(plan.analyses[0].session);
    assert!(plan
        .explain()
        .contains("session (gap 30m, per key) windows"));
    assert!(plan
        .explain()
        .contains("columns: session_start, session_end, key: user_id, n, ms"));

    for (text, want) in [
        (
            "[[analysis]]\nname = \"x\"\nwindow = { session_gap = \"5m\", slide = \"1m\" }\nselect = [\"count() as n\"]\n",
            "sessions do not slide",
        ),
        (
            "[[analysis]]\nname = \"x\"\nwindow = { session_gap = \"5m\", size = \"1m\" }\nselect = [\"count() as n\"]\n",
            "either `size` (tumbling or sliding) or `session_gap`",
        ),
        (
            "[[analysis]]\nname = \"x\"\nwindow = {}\nselect = [\"count() as n\"]\n",
            "a window needs `size`",
        ),
        (
            "[[analysis]]\nname = \"x\"\nwindow = { session_gap = \"0s\" }\nselect = [\"count() as n\"]\n",
            "window.session_gap: must be greater than zero",
        ),
        (
            "[[analysis]]\nname = \"x\"\nwindow = { session_gap = \"5m\" }\nselect = [\"count() as session_end\"]\n",
            "duplicate column `session_end`",
        ),
        (
            "[[analysis]]\nname = \"x\"\ninput = \"late\"\nwindow = { session_gap = \"5m\" }\nselect = [\"count() as n\"]\n",
            "no `window`",
        ),
    ] {
        let err = compile(&format!("{HEAD}{text}")).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let err = compile(&format!(
        "{HEAD}{sess}[[analysis]]\nname = \"d\"\nfrom = \"s\"\ndetect = {{ kind = \"lag\", field = \"n\" }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("`s` has session windows"), "{err}");
}

#[test]
fn explode_complete_mode_and_sources() {
    let sock = "name = \"j\"\n[source]\nkind = \"socket\"\nport = 9999\nformat = \"text\"\n";
    let wc = "[[analysis]]\nname = \"wc\"\nmode = \"complete\"\ntrigger = \"2s\"\nexplode = \"split(line) as word\"\nwhere = \"word != 'a'\"\ngroup_by = [\"word\"]\nselect = [\"count() as n\"]\n";
    let plan = compile(&format!("{sock}{wc}")).unwrap();
    let n = &plan.nodes[0];
    assert_eq!((n.complete, n.update), (Some(2_000), false));
    assert_eq!(n.keys, vec![Field::Extra(0)]);
    assert_eq!(plan.extras, vec!["word"]);
    assert!(plan.analyses[0].complete && plan.analyses[0].windowless);
    assert_eq!(plan.granularity_ms, 2_000);
    assert!(plan.used_fields().contains(Field::Line));
    assert!(
        matches!(&plan.source.kind, SourceConfig::Socket(c) if c.port == 9999 && c.host == "127.0.0.1" && !c.reconnect)
    );
    // An exploded name is the analysis's own.
    let other = "[[analysis]]\nname = \"o\"\nmode = \"update\"\ngroup_by = [\"word\"]\nselect = [\"count() as n\"]\n";
    let err = compile(&format!("{sock}{wc}{other}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `word`"), "{err}");

    for (text, want) in [
        ("[[analysis]]\nname = \"x\"\nmode = \"complete\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n", "takes no `window`"),
        ("[[analysis]]\nname = \"x\"\nmode = \"update\"\nexplode = \"split(line)\"\nselect = [\"count() as n\"]\n", "name the element"),
        ("[[analysis]]\nname = \"x\"\nmode = \"update\"\nexplode = \"split(line) as service\"\nselect = [\"count() as n\"]\n", "`service` is already a field"),
    ] {
        let err = compile(&format!("{sock}{text}")).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    for (src, want) in [
        ("[source]\nkind = \"socket\"\nformat = \"text\"\n", "needs `port`"),
        ("[source]\nkind = \"socket\"\nport = 1\npath = \"x\"\nformat = \"text\"\n", "`path` does not apply to a socket source"),
        ("[source]\nkind = \"file\"\npath = \"x\"\nrate = 5.0\nformat = \"json\"\n", "`rate` does not apply to a file source"),
        ("[source]\nkind = \"directory\"\nformat = \"json\"\n", "needs `path`"),
        ("[source]\nkind = \"directory\"\npath = \"d\"\nmax_files_per_trigger = 0\nformat = \"json\"\n", "at least 1"),
        ("[source]\nkind = \"generator\"\nformat = \"text\"\n", "the generator writes"),
        ("[source]\nkind = \"generator\"\nrate = -1.0\nformat = \"json\"\n", "positive number"),
        ("[source]\nkind = \"pipe\"\nformat = \"json\"\n", "unknown source kind `pipe`"),
    ] {
        let err = compile(&format!("name = \"j\"\n{src}{wc}")).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let dir = "name = \"j\"\n[source]\nkind = \"directory\"\npath = \"in\"\npattern = \"*.log\"\nmax_files_per_trigger = 3\nend_after_idle = \"2s\"\nformat = \"json\"\n";
    let plan = compile(&format!("{dir}{wc}").replace("split(line)", "split(message)")).unwrap();
    let SourceConfig::Directory(c) = &plan.source.kind else {
        panic!()
    };
    assert_eq!((c.pattern.as_str(), c.max_files_per_trigger), ("*.log", 3));
    assert_eq!(c.end_after_idle, Some(std::time::Duration::from_secs(2)));
    assert_eq!(
        plan.watermark_delay_ms, 300_000,
        "event time keeps the default delay"
    );
    let plan = compile(&format!("{sock}{wc}")).unwrap();
    assert_eq!(
        plan.watermark_delay_ms, 0,
        "processing time has no disorder"
    );
}

#[test]
fn lookups_add_fields_for_every_analysis() {
    let text = format!(
        "{HEAD}[[lookup]]\nname = \"teams\"\npath = \"ref/teams.csv\"\nkey = \"service\"\nfields = [\"team\", \"tier\"]\n\
         [[lookup]]\nname = \"ips\"\npath = \"ips.json\"\nkey = \"ip\"\non = \"ip_address\"\nfields = [\"label\"]\n\
         [[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nwhere = \"label is null\"\ngroup_by = [\"team\"]\nselect = [\"count() as n\", \"max(tier) as top\"]\n"
    );
    let src = SpecSource {
        file: "specs/t.toml",
        text: &text,
    };
    let plan = JobPlan::compile(&parse_spec(&src).unwrap(), &src).unwrap();
    assert_eq!(plan.extras, vec!["team", "tier", "label"]);
    let l = &plan.lookups[0];
    assert_eq!(
        l.path,
        std::path::Path::new("specs/ref/teams.csv"),
        "relative to the spec"
    );
    assert_eq!(
        (l.on, l.format),
        (Field::Service, crate::spec::plan::TableFormat::Csv)
    );
    assert_eq!(plan.lookups[1].on, Field::IpAddress);
    assert_eq!(plan.nodes[0].keys, vec![Field::Extra(0)]);
    let used = plan.used_fields();
    assert!(used.contains(Field::Service) && used.contains(Field::IpAddress));
    assert!(plan
        .explain()
        .contains("lookup `teams`: specs/ref/teams.csv (csv, reloaded when it changes)"));

    for (l, want) in [
        ("name = \"t\"\npath = \"t.txt\"\nkey = \"service\"\nfields = [\"team\"]\n", "cannot tell the format"),
        ("name = \"t\"\npath = \"t.csv\"\nkey = \"svc\"\nfields = [\"team\"]\n", "unknown event field `svc`"),
        ("name = \"t\"\npath = \"t.csv\"\nkey = \"service\"\nfields = [\"level\"]\n", "`level` is already a field"),
        ("name = \"t\"\npath = \"t.csv\"\nkey = \"service\"\nfields = []\n", "list the table's columns"),
        ("name = \"t\"\npath = \"t.csv\"\nformat = \"xml\"\nkey = \"service\"\nfields = [\"x\"]\n", "unknown table format `xml`"),
    ] {
        let err = compile(&format!("{HEAD}[[lookup]]\n{l}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as n\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn gauges_name_metric_columns() {
    let head = format!(
        "{HEAD}[[analysis]]\nname = \"rt\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"count() as n\", \"avg(response_time) as avg_rt\"]\n"
    );
    let plan = compile(&format!("{head}gauges = [\"avg_rt\", \"n\"]\n")).unwrap();
    assert_eq!(plan.analyses[0].gauges, vec![2, 1]);
    assert_eq!(plan.slide_of(0), 60_000);

    let err = compile(&format!("{head}gauges = [\"n\", \"nope\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.toml:11:16: gauges: unknown column `nope`"),
        "{err}"
    );
    let err = compile(&format!("{head}gauges = [\"service\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`service` is a group key"), "{err}");
    let err = compile(&format!("{head}gauges = [\"n\", \"n\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    let err = compile(&format!("{head}gauges = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml:11:"), "{err}");
}

#[test]
fn derived_columns() {
    let text = format!(
        "{HEAD}[[analysis]]\nname = \"rt\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"service\"]\nselect = [\"avg(response_time) as avg_rt\"]\n\
         [[analysis]]\nname = \"z\"\nfrom = \"rt\"\ndetect = {{ kind = \"zscore\", field = \"avg_rt\" }}\nhaving = \"abs(z_score) > 2\"\n"
    );
    let plan = compile(&text).unwrap();
    assert_eq!(
        plan.analyses[1].columns,
        vec![
            "service",
            "avg_rt",
            "baseline_mean",
            "baseline_stddev",
            "z_score"
        ]
    );
    assert_eq!(
        plan.analyses[1].kind_detector(),
        Some(&Detector::ZScore {
            column: 1,
            history: 10
        })
    );
}

/// `percentile` and `median` calls over one field share one sketch whose list they index;
/// `percentiles` lists are their own; parameters must be literals in range.
#[test]
fn percentile_calls_share_a_sketch_and_check_their_parameters() {
    use crate::spec::expr::Expr;
    let spec = |select: &str| {
        format!(
            "{HEAD}[[analysis]]\nname = \"a\"\nwindow = {{ size = \"1m\" }}\nselect = [{select}]\n"
        )
    };
    let p = compile(&spec(
        "\"median(response_time) as p50\", \"percentile(response_time, 0.99) as p99\", \
         \"percentile(response_time, 0.5) as again\", \"percentiles(response_time, [0.9, 0.1]) as ps\", \
         \"percentile_exact(response_time, 0.5) as e50\", \"approx_count_distinct(user_id) as u\", \
         \"top_k(ip_address, 3) as ips\"",
    ))
    .unwrap();
    let funcs: Vec<&AggFunc> = p.nodes[0].accs.iter().map(|a| &a.func).collect();
    assert_eq!(
        funcs,
        vec![
            &AggFunc::Percentile(Quantiles::new(&[0.5, 0.99], true)),
            &AggFunc::Percentile(Quantiles::new(&[0.9, 0.1], false)),
            &AggFunc::PercentileExact(Quantiles::new(&[0.5], true)),
            &AggFunc::ApproxCountDistinct,
            &AggFunc::TopK(3),
        ]
    );
    let AnalysisKind::Windowed { outputs, .. } = &p.analyses[0].kind else {
        panic!("windowed")
    };
    // [keys (none), 7 outputs, accumulators]: p50 and `again` are element 1 of slot 0.
    let elem = |slot: usize, at: i64| {
        Expr::Call(
            crate::spec::expr::Func::ElementAt,
            vec![
                Expr::Column(7 + slot),
                Expr::Lit(crate::record::Value::Int(at)),
            ],
        )
    };
    assert_eq!(outputs[0], elem(0, 1));
    assert_eq!(outputs[1], elem(0, 2));
    assert_eq!(outputs[2], elem(0, 1));
    assert_eq!(outputs[3], Expr::Column(8));
    for (select, want) in [
        ("\"percentile(response_time, 1.5) as p\"", "between 0 and 1"),
        ("\"percentile(response_time, service) as p\"", "a quantile"),
        (
            "\"percentiles(response_time, 0.5) as p\"",
            "list of quantiles",
        ),
        (
            "\"percentiles(response_time, []) as p\"",
            "1 to 32 quantiles",
        ),
        ("\"median(response_time, 0.5) as p\"", "one argument"),
        ("\"top_k(ip_address, 0) as t\"", "from 1 to 1000"),
        ("\"top_k(ip_address) as t\"", "a field and a count"),
        ("\"percentile(avg(response_time), 0.5) as p\"", "nested"),
        (
            "\"percentiles(response_time, [0.5, service]) as p\"",
            "literals only",
        ),
    ] {
        let e = compile(&spec(select)).unwrap_err().to_string();
        assert!(e.contains("select") && e.contains(want), "{select}: {e}");
    }
}

#[test]
fn max_future_defaults_to_an_hour_and_must_be_positive() {
    let analysis =
        "[[analysis]]\nname = \"a\"\nwindow = { size = \"1m\" }\nselect = [\"count() as n\"]\n";
    let p = compile(&format!("{HEAD}{analysis}")).unwrap();
    assert_eq!(p.max_future_ms, 3_600_000);
    assert!(p
        .explain()
        .contains("events more than 1h ahead of the wall clock are dead letters"));
    let p = compile(&format!(
        "{HEAD}[watermark]\nmax_future = \"1d\"\n{analysis}"
    ))
    .unwrap();
    assert_eq!(p.max_future_ms, 86_400_000);
    let err = compile(&format!(
        "{HEAD}[watermark]\nmax_future = \"0s\"\n{analysis}"
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "t.toml:7:14: watermark.max_future: must be greater than zero"
    );
}

#[test]
fn alerts_are_typed_and_their_summaries_bound_to_columns() {
    let head = format!(
        "{HEAD}[[analysis]]\nname = \"ddos\"\nwindow = {{ size = \"1m\" }}\ngroup_by = [\"ip_address\"]\nselect = [\"count() as n\"]\n"
    );
    let plan = compile(&format!(
        "{head}alert = {{ severity = \"critical\", summary = \"{{n}} from {{ip_address}}\" }}\n"
    ))
    .unwrap();
    let alert = plan.analyses[0].alert.as_ref().unwrap();
    assert_eq!(alert.severity, crate::spec::Severity::Critical);
    assert_eq!(
        alert.summary,
        vec![
            SummaryPart::Column(1),
            SummaryPart::Text(" from ".into()),
            SummaryPart::Column(0)
        ]
    );
    assert!(plan.has_alerts());
    assert!(plan.topics().contains(&"j.alerts".to_string()));
    assert!(plan
        .explain()
        .contains("alert (critical) -> topic `j.alerts`"));
    // No alert, no alerts topic.
    let plain = compile(&head).unwrap();
    assert!(!plain.has_alerts());
    assert!(!plain.topics().contains(&"j.alerts".to_string()));

    for (alert, want) in [
        // An unknown column, at check time, with the columns there are.
        (
            "alert = { severity = \"info\", summary = \"{nope}\" }",
            "t.toml:11:40: alert.summary: unknown column `nope` (columns: ip_address, n)",
        ),
        // Typed: an unknown key, a severity not in the list, a missing summary.
        (
            "alert = { severity = \"info\", summary = \"x\", page = true }",
            "t.toml:11:",
        ),
        (
            "alert = { severity = \"urgent\", summary = \"x\" }",
            "t.toml:11:",
        ),
        ("alert = { severity = \"info\" }", "t.toml:11:"),
        (
            "alert = { severity = \"info\", summary = \"{n\" }",
            "t.toml:11:40: alert.summary: `{n` is not closed",
        ),
    ] {
        let err = compile(&format!("{head}{alert}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{alert}: {err}");
    }
    let err = compile(&format!(
        "{head}alert = {{ severity = \"urgent\", summary = \"x\" }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown severity `urgent` (critical, warning, info)"),
        "{err}"
    );
    let err = compile(&format!(
        "{head}alert = {{ severity = \"info\", summary = \"x\", page = true }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("page"), "{err}");
    // A group key named like one of logflow_alert_active's own labels.
    let clash = head.replace(
        "group_by = [\"ip_address\"]",
        "explode = \"split(message) as severity\"\ngroup_by = [\"severity\"]",
    );
    let err = compile(&format!(
        "{clash}alert = {{ severity = \"info\", summary = \"x\" }}\n"
    ));
    assert!(
        err.is_err_and(|e| e.to_string().contains("would clash")),
        "a key named severity"
    );
}
