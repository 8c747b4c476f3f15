//! `report`: tables (default and declared), their rules, byte stability and `--check`,
//! several runs in one table, the per-agent pair table, LaTeX that compiles, the HTML
//! report in a real headless Chromium, and the JSON Schema of the experiment file.

use super::analysis::{manifest, pair_records, synthetic, write_jsonl};
use super::common::{root, sweep};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use sweep::report::{self, Format, LabelBy, ReportOptions};
use sweep::spec::OptionValue;
use sweep::store::Manifest;

/// The experiment file of the synthetic run: two single-agent arms and a pair arm.
const SPEC: &str = "[experiment]\nname = \"synthetic\"\nreference = \"baseline\"\n\
[backend]\nkind = \"embedded\"\n[corpus]\npath = \"experiments/corpus\"\n\
[[arm]]\nname = \"baseline\"\n[[arm]]\nname = \"chimera\"\nmax_tokens = 128\n[arm.grid]\nnum_ctx = [256, 512, 1024]\n\
[[arm]]\nname = \"pair\"\nagent = \"pair\"\na = { persona = \"insight\" }\nb = {}\n";

/// Whether a tool the tests need must be there: on CI (`scripts/test.sh` installs it) a
/// missing tool fails the test; elsewhere the check is skipped with a note.
fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool).arg(arg).output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (scripts/test.sh installs it)"
        );
        eprintln!("{tool} not on PATH: check skipped");
    }
    ok
}

/// A finished synthetic run in `dir`: 4 single cells (one slower, one with too few reps),
/// a pair cell; a manifest with environment, backend defaults and the experiment file.
fn synthetic_run(dir: &Path, spec: &str) {
    let mut records = synthetic(8);
    for r in records.iter_mut().filter(|r| r.arm == "baseline") {
        // User text with Markdown and LaTeX specials must come out escaped.
        r.options
            .insert("keep_alive".into(), OptionValue::Text("5m|a_b&c%".into()));
    }
    for r in records.iter_mut().filter(|r| r.arm == "chimera") {
        r.options
            .insert("num_predict".into(), OptionValue::Int(128));
    }
    records.extend(pair_records(6));
    for r in records.iter_mut().filter(|r| r.arm == "pair") {
        let opt = if r.agent == "A" {
            "A.num_ctx"
        } else {
            "B.num_ctx"
        };
        r.options.insert(opt.into(), OptionValue::Int(1024));
    }
    let mut m: Manifest = manifest(Some("baseline"));
    m.spec = spec.to_string();
    m.spec_hash = "f00d".repeat(16);
    m.host = sweep::env::HostInfo {
        hostname: "node_1".into(),
        cpu_model: "Intel Xeon Platinum 8480+".into(),
        cpu_threads: 112,
        gpus: vec![sweep::env::GpuInfo {
            name: "NVIDIA H100 80GB HBM3".into(),
            driver: "550.54.15".into(),
            memory_mib: Some(81559),
        }],
        ..Default::default()
    };
    m.backend = sweep::backend::BackendInfo {
        kind: "embedded".into(),
        version: Some("0.1.160".into()),
        model_digest: Some(
            "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a".into(),
        ),
        defaults: [
            ("num_ctx", "2048"),
            ("num_predict", "128"),
            ("temperature", "0.8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    };
    m.git_commit = Some("0123456789abcdef0123".into());
    m.sweep_version = "0.1.0".into();
    m.write(dir).unwrap();
    write_jsonl(dir, &records, false);
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file under `dir/tables`, name → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("tables"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// `all.tex` (or `main`) in `dir` compiles with pdflatex; returns the PDF.
fn assert_latex_compiles(dir: &Path, main: &str) -> Option<PathBuf> {
    if !have("pdflatex", "-version") {
        return None;
    }
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", main])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pdf = dir.join(Path::new(main).with_extension("pdf"));
    assert!(pdf.is_file());
    Some(pdf)
}

fn keep(dir: &Path, files: &[PathBuf]) {
    // To look at the output: SWEEP_KEEP_REPORT=/some/dir cargo test --test it report::
    if let Some(keep) = std::env::var_os("SWEEP_KEEP_REPORT") {
        for f in files {
            let to = Path::new(&keep).join(f.strip_prefix(dir).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, to).unwrap();
        }
    }
}

#[test]
fn default_tables_follow_the_rules_and_compile() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), SPEC);
    let files = report::render(dir.path(), &ReportOptions::default()).unwrap();
    keep(dir.path(), &files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    for want in [
        "tables/ttft_ms.md",
        "tables/ttft_ms.tex",
        "tables/ttft_ms.csv",
        "tables/ttft_ms.json",
        "tables/ttft_ms_pairs.md",
        "tables/pairs.md",
        "tables/pair_agents.md",
        "tables/methods.md",
        "tables/methods.tex",
        "tables/all.tex",
        "report.html",
        "plots/ttft_ecdf.svg",
        "plots/decode_tps_box.svg",
        "plots/ttft_ms_vs_num_ctx.svg",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    let md = read(&dir.path().join("tables/ttft_ms.md"));
    // Single-agent and pair cells never share a table.
    assert!(!md.contains("| pair |"), "{md}");
    // num_predict is 128 in every row (set on chimera, the engine's default on the
    // baseline): it moves into the caption, marked as a default where it is one.
    assert!(md.lines().next().unwrap().contains("num_predict"), "{md}");
    let header = md.lines().find(|l| l.starts_with("| arm |")).unwrap();
    assert!(!header.contains("num_predict"), "{header}");
    // The baseline shows the engine's num_ctx, marked as a default.
    let base = md.lines().find(|l| l.starts_with("| baseline |")).unwrap();
    assert!(
        base.contains("| 2048† |") && base.contains("(ref)"),
        "{base}"
    );
    assert!(base.contains("5m\\|a_b&c%"), "{base}");
    // Numbers right-aligned; verdicts; too few reps said, not faked.
    assert!(md.contains("---:|"), "{md}");
    let slow = md.lines().find(|l| l.contains("| 256 |")).unwrap();
    assert!(slow.contains("**worse**"), "{slow}");
    let same = md.lines().find(|l| l.contains("| 512 |")).unwrap();
    assert!(same.contains("| ~ |"), "{same}");
    let small = md.lines().find(|l| l.contains("| 1024 |")).unwrap();
    assert!(small.contains("[need ≥ 6]"), "3 reps: {small}");
    assert!(md.contains("geomean"), "{md}");
    // Every value of a column has the same decimals.
    let col = |line: &str, i: usize| line.split('|').map(str::trim).nth(i).unwrap().to_string();
    let idx = header
        .split('|')
        .map(str::trim)
        .position(|h| h.starts_with("median"))
        .unwrap();
    let decimals: Vec<usize> = md
        .lines()
        .filter(|l| l.starts_with("| chimera"))
        .map(|l| {
            let v = col(l, idx);
            let first = v.split(' ').next().unwrap().trim_matches('*').to_string();
            first.split('.').nth(1).map_or(0, str::len)
        })
        .collect();
    assert!(
        decimals.windows(2).all(|w| w[0] == w[1]),
        "{decimals:?}\n{md}"
    );
    // A journal prints one or two lines under a table: what an entry is and the dagger,
    // the exclusions of this table, and where the method is.
    let notes: Vec<&str> = md.lines().filter(|l| l.starts_with("> ")).collect();
    assert!(notes.len() <= 2, "{} note lines: {md}", notes.len());
    for want in ["† not set in the experiment file", "methods.md"] {
        assert!(md.contains(want), "notes lack {want:?}: {md}");
    }
    // Every table the report writes (metric, pair, per-agent tables alike): at most two
    // note lines, each short enough to print on one line of a landscape page.
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "json") && !f.ends_with("tidy.json"))
    {
        let tables: serde_json::Value = serde_json::from_str(&read(f)).unwrap();
        for t in tables.as_array().unwrap() {
            let notes = t["notes"].as_array().unwrap();
            assert!(notes.len() <= 2, "{}: {notes:?}", f.display());
            for n in notes {
                let chars = n.as_str().unwrap().chars().count();
                assert!(chars <= 240, "{}: {chars} characters: {n}", f.display());
            }
        }
    }
    // What the run's tables share is stated once, in the methods.
    let methods = read(&dir.path().join("tables/methods.md"));
    for want in [
        "Holm",
        "order-statistic",
        "host node_1",
        "CPU Intel Xeon Platinum 8480+ (112 threads)",
        "GPU NVIDIA H100 80GB HBM3 (driver 550.54.15)",
        "backend embedded 0.1.160",
        "model digest a2af6cc3eb7f",
        "commit 0123456789ab",
        "sweep 0.1.0",
        "Excluded by rule and counted:",
    ] {
        assert!(methods.contains(want), "methods lack {want:?}: {methods}");
    }
    assert!(
        !md.contains("host node"),
        "environment repeated under a table: {md}"
    );

    let tex = read(&dir.path().join("tables/ttft_ms.tex"));
    for want in [
        "\\toprule",
        "\\label{tab:ttft_ms}",
        "S[table-format=",
        "\\begin{threeparttable}",
        "\\begin{tablenotes}",
        "5m|a\\_b\\&c\\%",
        "\\textbf{worse}",
        "2048\\textsuperscript{\\dag}",
    ] {
        assert!(tex.contains(want), "{want:?} missing: {tex}");
    }
    assert!(!tex.contains("\\parbox"), "{tex}");

    // The pair tables: speedup with its CI, each agent on its own (A vs B, concurrent vs
    // sequential).
    let pairs = read(&dir.path().join("tables/pairs.md"));
    assert!(pairs.contains("speedup [95% CI]"), "{pairs}");
    let agents = read(&dir.path().join("tables/pair_agents.md"));
    let a = agents.lines().find(|l| l.contains("| A |")).unwrap();
    let b = agents.lines().find(|l| l.contains("| B |")).unwrap();
    assert!(a.contains("(ref)") && !b.contains("(ref)"), "{agents}");
    assert!(
        agents.contains("TTFT Δ% concurrent vs sequential"),
        "{agents}"
    );
    assert!(b.matches('%').count() >= 2, "B has both changes: {b}");
    // The pair cells' own constant (num_ctx 1024 for both members) went to the caption.
    assert!(
        agents.lines().next().unwrap().contains("A.num_ctx = 1024"),
        "{agents}"
    );

    assert_latex_compiles(&dir.path().join("tables"), "all.tex");

    // An unknown axis is a typed error.
    let bad = ReportOptions {
        group_by: vec!["nope".into()],
        plots: false,
        ..ReportOptions::default()
    };
    assert!(matches!(
        report::render(dir.path(), &bad),
        Err(report::ReportError::UnknownAxis(..))
    ));

    // Grouping splits a metric's file into sections; the paper layout spreads num_ctx over
    // the columns in numeric order, the baseline's default 2048 in its own column.
    let pivot = ReportOptions {
        formats: vec![Format::Markdown, Format::Latex],
        columns: Some("num_ctx".into()),
        group_by: vec!["arm".into()],
        plots: false,
        ..ReportOptions::default()
    };
    report::render(dir.path(), &pivot).unwrap();
    let md = read(&dir.path().join("tables/ttft_ms.md"));
    assert!(md.contains("— arm=chimera"), "{md}");
    let pivot = ReportOptions {
        group_by: Vec::new(),
        ..pivot
    };
    report::render(dir.path(), &pivot).unwrap();
    let md = read(&dir.path().join("tables/ttft_ms_by_num_ctx.md"));
    let header = md.lines().find(|l| l.starts_with("| arm |")).unwrap();
    let at = |v: &str| header.find(&format!("num_ctx = {v} ")).unwrap();
    assert!(
        at("256") < at("512") && at("512") < at("1024") && at("1024") < at("2048"),
        "{header}"
    );
    let base = md.lines().find(|l| l.starts_with("| baseline |")).unwrap();
    assert!(base.contains("(ref)"), "{base}");
    assert!(
        !md.contains("num_ctx=–") && !md.contains("num_ctx = –"),
        "{md}"
    );
    // The earlier render's files are gone: tables/ holds exactly this render's tables.
    assert!(!dir.path().join("tables/ttft_ms.csv").exists());
    assert_latex_compiles(&dir.path().join("tables"), "all.tex");
}

#[test]
fn tables_are_byte_stable_and_check_finds_a_change() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), SPEC);
    let opts = ReportOptions {
        plots: false,
        ..ReportOptions::default()
    };
    report::render(dir.path(), &opts).unwrap();
    let first = snapshot(dir.path());
    report::render(dir.path(), &opts).unwrap();
    assert_eq!(first, snapshot(dir.path()), "two renders of one run differ");

    let run = dir.path().to_path_buf();
    let committed = dir.path().join("tables");
    let o = report::check(
        std::slice::from_ref(&run),
        LabelBy::Run,
        false,
        &committed,
        &opts,
    )
    .unwrap();
    assert!(o.clean() && o.compared >= 10, "{:?}", o.differences);

    // Through the CLI: exit 0 when identical, 1 with a unified diff after a change.
    let ok = sweep()
        .args(["report"])
        .arg(&run)
        .arg("--check")
        .arg(&committed)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let f = committed.join("ttft_ms.md");
    let text = read(&f).replacen("geomean", "geometric mean", 1);
    std::fs::write(&f, text).unwrap();
    std::fs::write(committed.join("old_table.md"), "stale\n").unwrap();
    let bad = sweep()
        .args(["report"])
        .arg(&run)
        .arg("--check")
        .arg(&committed)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("-| geometric mean") || out.contains("-| geometric"),
        "{out}"
    );
    assert!(out.contains("+| geomean"), "{out}");
    assert!(
        out.contains("old_table.md") && out.contains("stale"),
        "{out}"
    );
}

#[test]
fn declared_tables_are_exactly_what_is_written() {
    let spec = format!(
        "{SPEC}[[table]]\nname = \"latency\"\nmetrics = [\"ttft_ms\", \"decode_tps\"]\narms = [\"baseline\", \"chimera\"]\n\
         ci = \"pm\"\ndigits = 3\ncaption = \"Latency and throughput\"\nlabel = \"tab:lat\"\nbold = \"best\"\n\
         [[table]]\nname = \"ctx\"\nmetric = \"ttft_ms\"\nstatistic = \"mean\"\ncolumns = \"num_ctx\"\narms = [\"chimera\"]\n\
         [[table]]\nname = \"duo\"\nmetric = \"e2e_ms\"\narms = [\"pair\"]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), &spec);
    let opts = ReportOptions {
        plots: false,
        html: false,
        ..ReportOptions::default()
    };
    report::render(dir.path(), &opts).unwrap();
    let mut stems: Vec<String> = snapshot(dir.path())
        .keys()
        .map(|k| k.split('.').next().unwrap().to_string())
        .collect();
    stems.dedup();
    stems.sort();
    stems.dedup();
    assert_eq!(
        stems,
        ["all", "ctx", "duo", "latency", "methods", "tidy"],
        "{stems:?}"
    );
    let lat = read(&dir.path().join("tables/latency.md"));
    assert!(lat.starts_with("### Latency and throughput"), "{lat}");
    assert!(lat.contains(" ± "), "pm style: {lat}");
    let tex = read(&dir.path().join("tables/latency.tex"));
    assert!(
        tex.contains("\\label{tab:lat}") && tex.contains("$\\pm$"),
        "{tex}"
    );
    // Best TTFT is the lowest value: bold in its column.
    assert!(lat.contains("**"), "{lat}");
    let ctx = read(&dir.path().join("tables/ctx.md"));
    // One arm: constant, so in the caption; num_ctx across the columns.
    assert!(
        ctx.lines().next().unwrap().contains("arm = chimera"),
        "{ctx}"
    );
    assert!(
        ctx.contains("num_ctx = 256") && ctx.contains("mean"),
        "{ctx}"
    );
    let duo = read(&dir.path().join("tables/duo.md"));
    assert!(!duo.contains("baseline") || duo.contains("Method"), "{duo}");
    assert_latex_compiles(&dir.path().join("tables"), "all.tex");
}

#[test]
fn several_runs_share_a_table_labelled_and_mixed_ones_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let (r1, r2) = (base.path().join("r1"), base.path().join("r2"));
    for (dir, host) in [(&r1, "node_1"), (&r2, "node_2")] {
        std::fs::create_dir_all(dir).unwrap();
        synthetic_run(dir, SPEC);
        let mut m = Manifest::read(dir).unwrap();
        m.host.hostname = host.into();
        m.write(dir).unwrap();
    }
    let out = base.path().join("joined");
    let opts = ReportOptions {
        plots: false,
        ..ReportOptions::default()
    };
    let runs = vec![r1.clone(), r2.clone()];
    let r = report::render_runs(&runs, LabelBy::Host, false, &out, &opts).unwrap();
    assert!(
        r.joined_over
            .iter()
            .any(|d| d.contains("host: node_1 | node_2")),
        "{:?}",
        r.joined_over
    );
    let md = read(&out.join("tables/ttft_ms.md"));
    let header = md.lines().find(|l| l.starts_with("| host |")).unwrap();
    assert!(header.contains("arm"), "{header}");
    assert!(
        md.contains("| node_1 |") && md.contains("| node_2 |"),
        "{md}"
    );
    // Where the joined runs differ is stated once, in the methods; the table cites them.
    assert!(md.contains("methods.md"), "{md}");
    let methods = read(&out.join("tables/methods.md"));
    assert!(
        methods.contains("The runs differ in: host: node_1 \\| node_2"),
        "{methods}"
    );
    assert!(out.join("report.html").is_file());

    // A run of another experiment file is refused, unless asked.
    let mut m = Manifest::read(&r2).unwrap();
    m.spec_hash = "beef".repeat(16);
    m.write(&r2).unwrap();
    let e = report::render_runs(&runs, LabelBy::Host, false, &out, &opts).unwrap_err();
    assert!(matches!(e, report::ReportError::MixedRuns(_)), "{e}");
    let cli = sweep()
        .arg("report")
        .args(&runs)
        .args(["--label-by", "host", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        cli.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(String::from_utf8_lossy(&cli.stderr).contains("--allow-mixed"));
    let cli = sweep()
        .arg("report")
        .args(&runs)
        .args(["--label-by", "host", "--allow-mixed", "--no-plots", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        cli.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        err.contains("host: node_1 | node_2") && err.contains("experiment file"),
        "{err}"
    );
}

/// Headless Chromium (Debian's package) loads `page`, writes a screenshot; returns its
/// stderr (console messages are logged there) and the PNG.
fn chromium(page: &Path, png: &Path) -> Option<(String, Vec<u8>)> {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (scripts/test.sh installs it)"
        );
        eprintln!("chromium not on PATH: browser check skipped");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read(png).unwrap(),
    ))
}

/// Console errors (and uncaught exceptions) Chromium logged for a page.
fn console_errors(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect()
}

/// Share of pixels that are not (near) the background colour of a PNG.
fn ink(png: &[u8]) -> f64 {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let bg = &px[..channels];
    let n = px.len() / channels;
    let differ = px
        .chunks(channels)
        .filter(|p| p.iter().zip(bg).any(|(a, b)| a.abs_diff(*b) > 24))
        .count();
    differ as f64 / n as f64
}

#[test]
fn html_report_renders_in_headless_chromium_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_run(dir.path(), SPEC);
    report::render(dir.path(), &ReportOptions::default()).unwrap();
    let page = dir.path().join("report.html");
    let html = read(&page);
    // Self-contained: plots inline, nothing fetched.
    assert!(
        html.contains("<svg") && html.contains("<table"),
        "tables and plots inline"
    );
    for remote in ["http://", "https://", "<script", "<link", "@import", "src="] {
        let hits: Vec<&str> = html
            .lines()
            .filter(|l| l.contains(remote) && !l.contains("xmlns"))
            .collect();
        assert!(hits.is_empty(), "{remote}: {hits:?}");
    }
    for want in [
        "Environment",
        "Exclusions",
        "verdict",
        "Experiment file",
        "[[arm]]",
        "node_1",
    ] {
        assert!(html.contains(want), "{want} missing");
    }

    // The check can fail: a page that logs an error is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('broken on purpose')</script></body></html>",
    )
    .unwrap();
    let Some((err, _)) = chromium(&bad, &dir.path().join("bad.png")) else {
        return;
    };
    assert!(
        console_errors(&err)
            .iter()
            .any(|l| l.contains("broken on purpose")),
        "a console error must be seen: {err}"
    );

    let png = dir.path().join("report.png");
    let (err, shot) = chromium(&page, &png).unwrap();
    let errors = console_errors(&err);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let share = ink(&shot);
    assert!(
        share > 0.02,
        "screenshot is blank ({share:.4} of pixels inked)"
    );
    if let Some(keep) = std::env::var_os("SWEEP_KEEP_REPORT") {
        std::fs::copy(&png, Path::new(&keep).join("report.png")).unwrap();
    }
}

#[test]
fn schema_validates_shipped_experiments_and_rejects_schema_level_mistakes() {
    let out = sweep().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema, sweep::spec::json_schema());
    // The copy the experiment files' `#:schema` directive points at is the current one.
    let committed: serde_json::Value =
        serde_json::from_str(&read(&root().join("experiments/sweep.schema.json"))).unwrap();
    assert!(
        committed == schema,
        "experiments/sweep.schema.json is stale: cargo run -- schema > experiments/sweep.schema.json"
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |p: &Path| -> serde_json::Value {
        let v: toml::Value = toml::from_str(&read(p)).unwrap();
        serde_json::to_value(v).unwrap()
    };
    let mut shipped = 0;
    for e in std::fs::read_dir(root().join("experiments")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = read(&p);
            assert!(
                text.starts_with("#:schema "),
                "{}: the first line is the taplo / Even Better TOML schema directive",
                p.display()
            );
            let errors: Vec<String> = validator
                .iter_errors(&as_json(&p))
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            shipped += 1;
        }
    }
    assert!(shipped >= 2);
    // The fixtures whose mistake is a matter of shape (an unknown key, a wrong type, a
    // value out of range, a word not in the list) fail the schema too; the others (an
    // unknown reference arm, an exclude that matches nothing …) only the validator sees.
    for stem in [
        "02_unknown_top_key",
        "03_unknown_experiment_key",
        "04_num_ctx_zero",
        "05_negative_temperature",
        "06_empty_grid",
        "09_missing_corpus",
        "10_wrong_type_repetitions",
        "11_zero_repetitions",
        "12_unknown_backend_kind",
        "16_unknown_option",
        "17_grid_not_array",
        "18_grid_empty_axis",
        "19_top_p_out_of_range",
        "20_num_gpu_negative",
        "21_temperature_string",
        "22_bad_order",
        "24_unknown_agent",
        "28_bad_persona",
        "29_negative_timeout",
        "32_bad_arm_name",
        "34_bad_alpha",
        "35_unknown_threshold",
        "36_empty_corpus_path",
        "38_max_tokens_zero",
        "39_bad_pair_member_key",
    ] {
        let p = root().join(format!("tests/fixtures/bad/{stem}.toml"));
        assert!(
            !validator.is_valid(&as_json(&p)),
            "{stem} passes the schema"
        );
        assert!(
            sweep::spec::Spec::load(&p).is_err(),
            "{stem} passes the validator"
        );
    }
}

/// `sweep run` ends with its answer: the headline table (intervals and verdicts when there
/// are ≥ 6 reps) on stdout, the paths of the full report, and the report written into the
/// run; with Ollama the manifest keeps what `/api/show` reports as the model's defaults.
#[test]
fn run_ends_with_the_headline_table_and_the_report() {
    let server = super::common::quiet_server(6, 1, sweep_testkit::FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let corpus = root().join("experiments/corpus");
    let spec = tmp.path().join("end.toml");
    std::fs::write(
        &spec,
        format!(
            "[experiment]\nname = \"end\"\nrepetitions = 6\nwarmup = 1\nreference = \"baseline\"\n\
             [backend]\nkind = \"ollama\"\nurl = \"{}\"\nmodel = \"gemma3:latest\"\ntimeout_s = 10\n\
             [corpus]\npath = \"{}\"\n[run]\nresults_dir = \"{}\"\n\
             [[arm]]\nname = \"baseline\"\n[[arm]]\nname = \"chimera\"\n[arm.grid]\nnum_ctx = [256]\n",
            server.url(),
            corpus.display(),
            tmp.path().join("results").display()
        ),
    )
    .unwrap();
    let out = sweep()
        .args(["run", "--progress", "plain"])
        .arg(&spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = super::common::only_run(tmp.path(), "end");
    assert!(
        stdout.contains("Single-agent cells: median [CI]"),
        "{stdout}"
    );
    let chimera = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("chimera"))
        .unwrap();
    // Six reps: a real interval and a real change, no "need ≥ 6".
    assert!(
        chimera.matches('[').count() >= 2 && !chimera.contains("need"),
        "{chimera}"
    );
    assert!(
        stdout.contains(&run.join("report.html").display().to_string()),
        "{stdout}"
    );
    assert!(run.join("report.html").is_file() && run.join("tables/ttft_ms.md").is_file());
    // The mock peer's /api/show parameters (temperature 1, top_k 64, top_p 0.95) are kept as
    // the backend's defaults, and the baseline's row shows them marked.
    let m = Manifest::read(&run).unwrap();
    assert_eq!(
        m.backend.defaults.get("top_k").map(String::as_str),
        Some("64")
    );
    assert_eq!(
        m.backend.defaults.get("temperature").map(String::as_str),
        Some("1")
    );
    assert!(!m.backend.defaults.contains_key("stop"));
}

/// The committed example: its tables are what `sweep report` makes of its records today
/// (the paper-CI check a paper's repository would run), and the LaTeX document that inputs
/// them compiles with pdflatex; its first page renders to a non-blank PNG.
#[test]
fn example_tables_are_current_and_its_paper_compiles() {
    let ex = root().join("results/example");
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    for f in ["manifest.json", "records.jsonl"] {
        std::fs::copy(ex.join(f), run.join(f)).unwrap();
    }
    let out = sweep()
        .arg("report")
        .arg(&run)
        .arg("--check")
        .arg(ex.join("tables"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "results/example/tables are stale (scripts/example.sh rebuilds them):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let paper = tmp.path().join("paper");
    std::fs::create_dir_all(paper.join("tables")).unwrap();
    std::fs::copy(ex.join("paper.tex"), paper.join("paper.tex")).unwrap();
    for e in std::fs::read_dir(ex.join("tables")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), paper.join("tables").join(e.file_name())).unwrap();
    }
    let Some(pdf) = assert_latex_compiles(&paper, "paper.tex") else {
        return;
    };
    if !have("pdftoppm", "-v") {
        return;
    }
    let png = paper.join("page");
    let out = Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&pdf)
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success());
    let share = ink(&std::fs::read(png.with_extension("png")).unwrap());
    assert!(share > 0.01, "first page is blank ({share:.4})");
    assert!(ex.join("paper-page1.png").is_file() && ex.join("report.png").is_file());
}

/// The pair_agents table bolds the tested change itself: B's +30% concurrent TTFT (against
/// its sequential phase and against A) is bold in its two Δ% columns, and decode tok/s and
/// contention beside them are not (the bold once sat one column to the right).
#[test]
fn pair_agents_bold_sits_on_the_tested_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = pair_records(8);
    for r in records
        .iter_mut()
        .filter(|r| r.agent == "B" && r.phase == sweep::record::Phase::Concurrent)
    {
        r.ttft_ms = r.ttft_ms.map(|t| t * 1.3);
    }
    manifest(None).write(dir.path()).unwrap();
    write_jsonl(dir.path(), &records, false);
    let opts = ReportOptions {
        formats: vec![Format::Markdown],
        plots: false,
        ..ReportOptions::default()
    };
    report::render(dir.path(), &opts).unwrap();
    let agents = read(&dir.path().join("tables/pair_agents.md"));
    let split = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let header = split(agents.lines().find(|l| l.contains("| agent |")).unwrap());
    let b = split(agents.lines().find(|l| l.contains("| B |")).unwrap());
    let bold: Vec<&str> = header
        .iter()
        .zip(&b)
        .filter(|(_, c)| c.starts_with("**"))
        .map(|(h, _)| h.as_str())
        .collect();
    assert_eq!(bold.len(), 2, "{agents}");
    assert!(
        bold.iter().all(|h| h.starts_with("TTFT Δ%")),
        "{bold:?}\n{agents}"
    );
}
