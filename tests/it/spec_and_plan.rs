//! The experiment file and the plan: the bad-input catalogue, the shipped experiments'
//! hand counts, and properties of grid expansion and ordering.

use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use sweep::plan::{Plan, Shard};
use sweep::spec::Spec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (fixture stem, expected line, expected column, words the message must contain)
const CATALOGUE: &[(&str, usize, usize, &str)] = &[
    ("01_syntax_error", 1, 12, "expected"),
    ("02_unknown_top_key", 14, 2, "unknown field `extra`"),
    (
        "03_unknown_experiment_key",
        3,
        1,
        "unknown field `repetitons`",
    ),
    (
        "04_num_ctx_zero",
        13,
        23,
        "num_ctx must be a positive integer",
    ),
    (
        "05_negative_temperature",
        14,
        21,
        "temperature must be a number ≥ 0",
    ),
    ("06_empty_grid", 13, 1, "empty grid"),
    (
        "07_duplicate_arm",
        14,
        8,
        "duplicate arm name \"a\" (first defined on line 12)",
    ),
    (
        "08_unknown_reference",
        3,
        13,
        "reference arm \"nope\" is not defined; expected one of: a",
    ),
    ("09_missing_corpus", 1, 1, "missing field `corpus`"),
    (
        "10_wrong_type_repetitions",
        3,
        15,
        "invalid type: string \"five\", expected i64",
    ),
    (
        "11_zero_repetitions",
        3,
        15,
        "repetitions must be between 1 and 100000, found 0",
    ),
    (
        "12_unknown_backend_kind",
        4,
        8,
        "backend kind must be \"ollama\", \"openai\" or \"embedded\"",
    ),
    ("13_missing_model", 3, 1, "missing key `model`"),
    ("14_bad_url", 5, 7, "expected an http:// or https:// URL"),
    ("15_no_arms", 1, 1, "no [[arm]] tables"),
    ("16_unknown_option", 13, 13, "unknown option `num_threads`"),
    ("17_grid_not_array", 14, 11, "expected an array"),
    (
        "18_grid_empty_axis",
        14,
        11,
        "grid axis `num_ctx` has no values",
    ),
    (
        "19_top_p_out_of_range",
        13,
        21,
        "top_p must be a number in (0, 1]",
    ),
    (
        "20_num_gpu_negative",
        14,
        16,
        "num_gpu must be an integer ≥ 0",
    ),
    (
        "21_temperature_string",
        13,
        27,
        "temperature must be a number ≥ 0, found string",
    ),
    (
        "22_bad_order",
        3,
        9,
        "order must be \"blocks\" (randomized blocks, the default), \"interleaved\" (fewest reloads), \"random\" or \"sequential\"",
    ),
    ("23_pair_missing_b", 11, 1, "needs `b` = { … }"),
    (
        "24_unknown_agent",
        13,
        9,
        "agent must be \"single\" or \"pair\"",
    ),
    (
        "25_exclude_matches_nothing",
        13,
        12,
        "matches no grid point",
    ),
    (
        "26_everything_excluded",
        14,
        1,
        "every grid point was excluded",
    ),
    ("27_openai_without_url", 3, 1, "needs url ="),
    (
        "28_bad_persona",
        13,
        11,
        "persona must be \"chimera\" or \"insight\"",
    ),
    (
        "29_negative_timeout",
        6,
        13,
        "timeout_s must be a positive number",
    ),
    (
        "30_api_key_inline",
        7,
        15,
        "api_key_env must name an environment variable",
    ),
    ("31_duplicate_key", 3, 1, "duplicate key"),
    (
        "32_bad_arm_name",
        12,
        8,
        "arm name must be a non-empty word",
    ),
    (
        "33_pair_key_on_single",
        13,
        5,
        "key `b` applies only to agent = \"pair\"",
    ),
    (
        "34_bad_alpha",
        14,
        9,
        "alpha must be strictly between 0 and 1",
    ),
    (
        "35_unknown_threshold",
        14,
        16,
        "unknown threshold metric \"ttft_p42\"",
    ),
    (
        "36_empty_corpus_path",
        7,
        8,
        "corpus path must not be empty",
    ),
    ("37_grid_repeated_value", 14, 17, "repeats a value"),
    (
        "38_max_tokens_zero",
        13,
        14,
        "num_predict must be a positive integer",
    ),
    ("39_bad_pair_member_key", 14, 22, "unknown key `colour`"),
    (
        "40_model_path_on_ollama",
        6,
        14,
        "model_path applies only to kind = \"embedded\"",
    ),
    (
        "41_not_utf8_like_garbage",
        1,
        1,
        "binary data: control character U+0001",
    ),
    ("42_not_utf8", 2, 10, "not UTF-8 text: byte 0xff at offset 22"),
    ("43_binary_nul", 3, 1, "binary data: control character U+0000"),
    (
        "44_timeout_too_large",
        6,
        13,
        "timeout_s must be a positive number of seconds up to 86400 (one day), found 1e300",
    ),
    (
        "45_corpus_missing",
        7,
        8,
        "corpus path no/such/corpus cannot be read",
    ),
    (
        "46_corpus_not_a_dir",
        7,
        8,
        "corpus path Cargo.toml is not a directory",
    ),
    (
        "47_bad_failed_share",
        9,
        20,
        "max_failed_share must be a share above 0 and at most 1",
    ),
    (
        "48_outage_wait_infinite",
        10,
        17,
        "outage_wait_s must be a number of seconds from 0 to 86400 (one day), found inf",
    ),
    (
        "49_grid_too_large",
        12,
        1,
        "this grid expands to 1280000000 points",
    ),
    (
        "50_num_gpu_on_external_openai",
        12,
        12,
        "num_gpu cannot be applied per request",
    ),
    (
        "51_server_option_without_server",
        10,
        29,
        "kv_cache_type is a server setting",
    ),
    ("52_server_preset_wrong_kind", 9, 10, "preset \"vllm\" serves"),
    ("53_server_with_url", 7, 7, "sweep starts the server"),
    (
        "54_quantized_kv_without_flash_attn",
        10,
        1,
        "quantized V cache requires flash_attn",
    ),
    (
        "55_custom_server_option_unused",
        15,
        12,
        "not used by the custom server",
    ),
    ("56_agents_on_a_pair", 13, 1, "a pair is already two agents"),
    ("57_speedup_without_levels", 10, 11, "needs a level of agents > 1"),
    ("58_agents_out_of_range", 11, 14, "agents must be an integer in 1..=64"),
    ("59_slo_without_limits", 8, 1, "[slo] needs at least one limit"),
    ("60_slo_bad_percentile", 10, 14, "percentile must be in (0, 100]"),
    (
        "61_open_loop_requests_and_duration",
        11,
        14,
        "either `requests` (arrivals per unit) or `duration_s`",
    ),
    (
        "62_open_loop_window_too_long",
        10,
        14,
        "at rate 4/s, duration_s = 30 is 120 arrivals per unit; at most 64",
    ),
    (
        "63_server_env_overrides_axis",
        13,
        1,
        "[server] env sets OLLAMA_NUM_PARALLEL too and would override it in every cell",
    ),
    (
        "64_ollama_host_in_env",
        10,
        23,
        "sweep sets OLLAMA_HOST to the address it starts Ollama on",
    ),
];

fn bad_dir() -> PathBuf {
    root().join("tests/fixtures/bad")
}

#[test]
fn catalogue_lists_every_fixture() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(bad_dir())
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = CATALOGUE.iter().map(|c| c.0.to_string()).collect();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 30);
}

#[test]
fn every_bad_fixture_gives_a_located_error() {
    let mut failures = Vec::new();
    for (stem, line, col, words) in CATALOGUE {
        let path = bad_dir().join(format!("{stem}.toml"));
        match Spec::load(&path) {
            Ok(_) => failures.push(format!("{stem}: accepted")),
            Err(e) => {
                let d = e.diagnostics();
                let Some(first) = d.first() else {
                    failures.push(format!("{stem}: no diagnostic: {e}"));
                    continue;
                };
                let hit = d
                    .iter()
                    .find(|x| x.message.contains(words))
                    .unwrap_or(first);
                if hit.file != path
                    || hit.line != *line
                    || hit.col != *col
                    || !hit.message.contains(words)
                {
                    failures.push(format!(
                        "{stem}: expected {line}:{col} containing {words:?}, got {e}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cli_exits_2_with_file_line_col_and_no_panic() {
    for (stem, line, col, _) in CATALOGUE {
        let path = bad_dir().join(format!("{stem}.toml"));
        let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{stem}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{stem}: {err}");
        let want = format!("{}:{line}:{col}: error:", path.display());
        assert!(err.contains(&want), "{stem}: wanted {want:?} in {err}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["validate", "no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no/such/file.toml: cannot read experiment file"),
        "{err}"
    );
}

fn load(rel: &str) -> Spec {
    Spec::load(&root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn gemma3_plan_matches_hand_count() {
    let spec = load("experiments/gemma3.toml");
    let plan = Plan::build(&spec, None);
    // baseline 1 + chimera 2×3×2 = 12 + three pair arms = 16 cells
    assert_eq!(plan.cells.len(), 16);
    // (20 repetitions + 1 warm-up) per cell
    assert_eq!(plan.units.len(), 16 * 21);
    assert_eq!(plan.measured_units(), 16 * 20);
    // singles: 13 cells × 21 units × 2 calls; pairs: 3 × 21 × 8
    assert_eq!(plan.total_calls(), 13 * 21 * 2 + 3 * 21 * 8);
    // reload groups: baseline (defaults) + 6 (num_gpu × num_ctx) + 3 distinct pair keys
    assert_eq!(plan.groups.len(), 1 + 6 + 3);
    // the reload-minimizing order reloads exactly once per group; randomized blocks once per
    // group and round, less where a round ends on the group the next one starts with
    assert_eq!(
        plan.reloads_in(&spec, sweep::spec::Order::Interleaved),
        plan.groups.len()
    );
    assert!(plan.reloads() <= 21 * 10 && plan.reloads() > 21 * 9);

    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["plan", "experiments/gemma3.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cells: 16"), "{text}");
    assert!(text.contains("LLM calls: 1050"), "{text}");
    assert!(text.contains("reload groups: 10"), "{text}");
    assert!(
        text.contains("blocks 208, interleaved (fewest reloads) 10"),
        "{text}"
    );
    // sweep starts Ollama itself: the pairs whose agents load the model differently get a
    // second server for B, and the homo pair's one server runs two requests at once
    // (OLLAMA_NUM_PARALLEL = 2 in [server] env), so the file has no warning at all
    assert!(
        text.contains("a second server for Agent B in 2 pair cell(s)"),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("warning")), "{text}");
    // without that variable the homo pair would queue on one slot, and the plan says so
    let source = std::fs::read_to_string(root().join("experiments/gemma3.toml")).unwrap();
    let one_slot = source.replace("OLLAMA_NUM_PARALLEL = \"2\", ", "");
    assert_ne!(one_slot, source);
    let spec1 = Spec::parse(&root().join("experiments/gemma3.toml"), &one_slot).unwrap();
    let warnings = sweep::plan::warnings(&spec1, &Plan::build(&spec1, None));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("arm \"chimera_homo\": agents A and B share one Ollama endpoint")
            && warnings[0].contains("(the managed Ollama) declared to run one request"),
        "{warnings:?}"
    );
    // the seed reports' configurations are cells of the plan, personas where the seeds had them
    for seed in [
        "A collector (echo): Ollama defaults | B insight (echo): num_gpu=80, num_ctx=512, temperature=1",
        "B insight (echo): num_gpu=80, num_ctx=1024, temperature=1",
        "num_gpu=120, num_ctx=512, temperature=0.6",
        "num_gpu=80, num_ctx=256, temperature=0.6",
    ] {
        assert!(text.contains(seed), "{seed}: {text}");
    }
    assert!(text.contains("prompts: chimera-2025 19 agents"), "{text}");
}

/// Randomized blocks: every round (one rep of every cell, warm-up rounds first) visits each
/// reload group exactly once, as one contiguous block, in a fresh seeded order; the same seed
/// gives the same order, another seed another.
#[test]
fn randomized_blocks_are_balanced_and_deterministic() {
    let spec = load("experiments/gemma3.toml");
    assert_eq!(spec.experiment.order, sweep::spec::Order::Blocks);
    let plan = Plan::build(&spec, None);
    let group_of = |cell: usize| {
        plan.groups
            .iter()
            .position(|g| g.cells.contains(&cell))
            .unwrap()
    };
    let mut rounds: Vec<Vec<&sweep::plan::Unit>> = Vec::new();
    for u in &plan.units {
        match rounds.last_mut() {
            Some(r) if r[0].warmup == u.warmup && r[0].rep == u.rep => r.push(u),
            _ => rounds.push(vec![u]),
        }
    }
    assert_eq!(rounds.len(), 21, "1 warm-up round + 20 reps");
    let mut orders = BTreeSet::new();
    for r in &rounds {
        // every cell once per round
        let mut cells: Vec<usize> = r.iter().map(|u| u.cell).collect();
        cells.sort_unstable();
        assert_eq!(cells, (0..plan.cells.len()).collect::<Vec<_>>());
        // every group once, contiguous
        let mut seq: Vec<usize> = r.iter().map(|u| group_of(u.cell)).collect();
        seq.dedup();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            seq.len(),
            plan.groups.len(),
            "a group split within a round: {seq:?}"
        );
        assert_eq!(sorted.len(), plan.groups.len());
        orders.insert(seq);
    }
    assert!(
        orders.len() > 15,
        "fresh group orders per round: {}",
        orders.len()
    );
    // a reload probe before every unit whose key differs from the previous one
    for w in plan.units.windows(2) {
        let changed = plan.cells[w[0].cell].reload_key != plan.cells[w[1].cell].reload_key;
        assert_eq!(w[1].reload, changed);
    }
    assert!(plan.units[0].reload);
    // determinism
    assert_eq!(Plan::build(&spec, None), plan);
    let mut other = spec.clone();
    other.experiment.seed = 43;
    assert_ne!(Plan::build(&other, None).units, plan.units);
}

#[test]
fn quickstart_is_valid_and_small() {
    let spec = load("experiments/quickstart.toml");
    let plan = Plan::build(&spec, None);
    // Enough reps for intervals and verdicts in every cell, few and short enough calls for ≤ 3 min on
    // 2 cores (results/example/README.md has the measured time).
    assert!(spec.experiment.repetitions as usize >= sweep::stats::engine::MIN_REPS);
    assert_eq!(plan.cells.len(), 4);
    assert!(plan.total_calls() <= 100, "{}", plan.total_calls());
}

#[test]
fn plan_json_round_trips() {
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["plan", "--json", "experiments/gemma3.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let plan: Plan = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan.cells.len(), 16);
}

fn grid_spec(
    ctx: &[u32],
    temps: &[f64],
    seed: u64,
    order: &str,
    exclude: Option<(u32, f64)>,
) -> Spec {
    let ctx: Vec<String> = ctx.iter().map(|c| c.to_string()).collect();
    let temps: Vec<String> = temps.iter().map(|t| format!("{t:?}")).collect();
    let ex = exclude
        .map(|(c, t)| format!("exclude = [{{ num_ctx = {c}, temperature = {t:?} }}]\n"))
        .unwrap_or_default();
    let text = format!(
        "[experiment]\nname = \"p\"\nrepetitions = 3\nwarmup = 1\nseed = {seed}\norder = \"{order}\"\n\
         [backend]\nkind = \"ollama\"\nmodel = \"m\"\n[corpus]\npath = \"c\"\n\
         [[arm]]\nname = \"base\"\n\
         [[arm]]\nname = \"grid\"\n{ex}[arm.grid]\nnum_ctx = [{}]\ntemperature = [{}]\n",
        ctx.join(", "),
        temps.join(", ")
    );
    Spec::parse(Path::new("p.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn distinct<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let s: BTreeSet<T> = v.iter().cloned().collect();
    s.into_iter().collect()
}

proptest! {
    #[test]
    fn grid_counts_ids_and_order(
        ctx in prop::collection::vec(1u32..4096, 1..4),
        temps in prop::collection::vec(0u32..20, 1..4),
        seed in 0u64..(i64::MAX as u64),
        order in prop::sample::select(vec!["interleaved", "random", "sequential"]),
    ) {
        let ctx = distinct(&ctx);
        let temps: Vec<f64> = distinct(&temps).into_iter().map(|t| t as f64 / 10.0).collect();
        let spec = grid_spec(&ctx, &temps, seed, order, None);
        let plan = Plan::build(&spec, None);
        // counts: 1 baseline + |ctx| × |temps|
        let cells = 1 + ctx.len() * temps.len();
        prop_assert_eq!(plan.cells.len(), cells);
        prop_assert_eq!(plan.units.len(), cells * 4);
        // ids unique
        let ids: BTreeSet<_> = plan.cells.iter().map(|c| c.id.clone()).collect();
        prop_assert_eq!(ids.len(), cells);
        // order is a permutation of every (cell, rep, warmup)
        let mut seen: Vec<(usize, u32, bool)> = plan.units.iter().map(|u| (u.cell, u.rep, u.warmup)).collect();
        seen.sort();
        let mut want = Vec::new();
        for c in 0..cells { for r in 0..3 { want.push((c, r, false)); } want.push((c, 0, true)); }
        want.sort();
        prop_assert_eq!(seen, want);
        prop_assert!(plan.units.iter().enumerate().all(|(i, u)| u.order == i));
        // same seed → same plan; ids do not depend on the seed
        let again = Plan::build(&spec, None);
        prop_assert_eq!(&again, &plan);
        let other = Plan::build(&grid_spec(&ctx, &temps, seed.wrapping_add(1), order, None), None);
        let other_ids: BTreeSet<_> = other.cells.iter().map(|c| c.id.clone()).collect();
        prop_assert_eq!(other_ids, ids);
        // warm-up of a cell always precedes its measured runs
        for c in 0..cells {
            let first_measured = plan.units.iter().position(|u| u.cell == c && !u.warmup).unwrap();
            let warm = plan.units.iter().position(|u| u.cell == c && u.warmup).unwrap();
            prop_assert!(warm < first_measured);
        }
    }

    #[test]
    fn exclude_removes_exactly_one_point(
        ctx in prop::collection::vec(1u32..4096, 1..4),
        temps in prop::collection::vec(0u32..20, 1..4),
        pick in any::<prop::sample::Index>(),
    ) {
        let ctx = distinct(&ctx);
        let temps: Vec<f64> = distinct(&temps).into_iter().map(|t| t as f64 / 10.0).collect();
        prop_assume!(ctx.len() * temps.len() > 1);
        let c = ctx[pick.index(ctx.len())];
        let t = temps[pick.index(temps.len())];
        let spec = grid_spec(&ctx, &temps, 1, "interleaved", Some((c, t)));
        let plan = Plan::build(&spec, None);
        prop_assert_eq!(plan.cells.len(), ctx.len() * temps.len());
        prop_assert!(!plan.cells.iter().any(|cell| cell.point.num_ctx == Some(c) && cell.point.temperature == Some(t)));
    }

    #[test]
    fn shards_partition_the_cells(n in 1u32..6) {
        let spec = grid_spec(&[256, 512, 1024], &[0.6, 1.0], 3, "interleaved", None);
        let all: BTreeSet<String> = Plan::build(&spec, None).cells.into_iter().map(|c| c.id).collect();
        let mut union = BTreeSet::new();
        let mut total = 0;
        for i in 0..n {
            let p = Plan::build(&spec, Some(Shard { index: i, count: n }));
            total += p.cells.len();
            union.extend(p.cells.into_iter().map(|c| c.id));
        }
        prop_assert_eq!(total, all.len());
        prop_assert_eq!(union, all);
    }
}

#[test]
fn cell_ids_are_stable_across_versions() {
    // Pinned: changing these breaks `sweep compare` against stored nightly baselines.
    let spec = load("experiments/gemma3.toml");
    let plan = Plan::build(&spec, None);
    let ids: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
    let expected = std::fs::read_to_string(root().join("tests/fixtures/gemma3_cell_ids.txt"))
        .unwrap_or_default();
    if expected.is_empty() {
        panic!("pin file missing; current ids:\n{}", ids.join("\n"));
    }
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(ids, expected);
}

/// A file with a [compare] table and fewer reps than a verdict needs: `validate` and `plan`
/// say so, with how many it needs.
#[test]
fn too_few_reps_for_a_verdict_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("experiments/gemma3.toml"))
        .unwrap()
        .replace("repetitions = 20", "repetitions = 5");
    let path = tmp.path().join("five.toml");
    std::fs::write(&path, text).unwrap();
    for cmd in ["validate", "plan"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .arg(cmd)
            .arg(&path)
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("repetitions = 5 but a regression verdict needs ≥ 6 reps per side")
                && all.contains("sweep power"),
            "{cmd}: {all}"
        );
    }
}

/// A 1.28e9-point grid (the out-of-memory case) is refused before it is expanded:
/// `validate` and `run` exit 2 with the grid's line, fast and in little memory (peak RSS
/// measured by `/usr/bin/time -v`).
#[test]
fn a_huge_grid_fails_fast_with_a_located_error_in_bounded_memory() {
    let path = bad_dir().join("49_grid_too_large.toml");
    for cmd in ["validate", "run"] {
        let t = std::time::Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(env!("CARGO_BIN_EXE_sweep"))
            .arg(cmd)
            .arg(&path)
            .output()
            .expect("/usr/bin/time (apt-get install time)");
        let wall = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        // /usr/bin/time passes the command's exit status through
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        let want = format!(
            "{}:12:1: error: arm \"a\": this grid expands to 1280000000 points",
            path.display()
        );
        assert!(err.contains(&want), "{cmd}: {err}");
        let kib: u64 = err
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok())
            .expect("no peak RSS in /usr/bin/time output");
        println!("{cmd}: peak RSS {kib} KiB, {:.2} s", wall.as_secs_f64());
        assert!(kib < 64 * 1024, "{cmd}: peak RSS {kib} KiB");
        assert!(wall < std::time::Duration::from_secs(10), "{cmd}: {wall:?}");
    }
}

#[test]
fn workload_levels_expand_into_numbered_copies_sharing_one_reload_group() {
    let text = "[experiment]\nname = \"p\"\nrepetitions = 2\nwarmup = 0\n\
                [backend]\nkind = \"ollama\"\nmodel = \"m\"\n[corpus]\npath = \"c\"\n\
                [[arm]]\nname = \"load\"\nspeedup = true\n[arm.grid]\nagents = [1, 3]\n\
                [[arm]]\nname = \"fixed\"\noptions = { agents = 2 }\n";
    let spec = Spec::parse(Path::new("p.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let plan = Plan::build(&spec, None);
    let by_level = |arm: &str, n: usize| {
        plan.cells
            .iter()
            .find(|c| c.arm() == arm && c.members().len() == n)
            .unwrap_or_else(|| panic!("no {arm} cell of {n}"))
    };
    let one = by_level("load", 1);
    let three = by_level("load", 3);
    let slots: Vec<String> = three
        .members()
        .iter()
        .map(|m| {
            serde_json::to_value(m.slot)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(slots, ["1", "2", "3"]);
    assert_eq!(one.phases(), [sweep::record::Phase::Single]);
    assert_eq!(
        three.phases(),
        [
            sweep::record::Phase::Concurrent,
            sweep::record::Phase::Sequential
        ]
    );
    assert_eq!(three.calls_per_unit(), 3 * 2 * 2);
    // Without speedup a level runs only together.
    let fixed = by_level("fixed", 2);
    assert_eq!(fixed.phases(), [sweep::record::Phase::Concurrent]);
    assert_eq!(fixed.calls_per_unit(), 4);
    // The same model and context at every level: one reload group, one probe per reload.
    assert_eq!(one.reload_key, three.reload_key);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(three.calls_in_phase(sweep::record::Phase::Reload), 1);
    // The level is part of the cell's identity (a file without levels keeps its ids: see
    // cell_ids_are_stable_across_versions).
    assert_ne!(one.id, three.id);
    let plain = Spec::parse(
        Path::new("p.toml"),
        "[experiment]\nname = \"p\"\n[backend]\nkind = \"ollama\"\nmodel = \"m\"\n\
         [corpus]\npath = \"c\"\n[[arm]]\nname = \"load\"\n",
    )
    .unwrap();
    let plain_id = Plan::build(&plain, None).cells[0].id.clone();
    let with_level_one = Spec::parse(
        Path::new("p.toml"),
        "[experiment]\nname = \"p\"\n[backend]\nkind = \"ollama\"\nmodel = \"m\"\n\
         [corpus]\npath = \"c\"\n[[arm]]\nname = \"load\"\n[arm.grid]\nagents = [2]\n",
    )
    .unwrap();
    assert_ne!(Plan::build(&with_level_one, None).cells[0].id, plain_id);
    assert_eq!(plan.total_calls(), 2 * (2 + 12 + 4));
}

/// `duration_s` bounds an open-loop unit by its window: each rate gets round(rate × window)
/// arrivals (its copies), the plan says so, and every arrival lies in the window.
#[test]
fn an_open_loop_window_sets_each_rates_arrival_count() {
    let spec = Spec::parse(
        Path::new("w.toml"),
        "[experiment]\nname = \"w\"\n[backend]\nkind = \"ollama\"\nmodel = \"m\"\n\
         [corpus]\npath = \"c\"\n[[arm]]\nname = \"open\"\nduration_s = 2.5\n\
         [arm.grid]\nrate = [0.5, 2, 10]\n",
    )
    .unwrap();
    let plan = Plan::build(&spec, None);
    let counts: Vec<(f64, usize)> = plan
        .cells
        .iter()
        .map(|c| (c.members()[0].options.rate.unwrap(), c.members().len()))
        .collect();
    // round(0.5 × 2.5) = round(1.25) = 1; 2 × 2.5 = 5; 10 × 2.5 = 25.
    assert_eq!(counts, [(0.5, 1), (2.0, 5), (10.0, 25)]);
    for c in &plan.cells {
        let t = c.arrival_offsets_ms(0, false);
        assert_eq!(t.len(), c.members().len());
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
        assert!(t.iter().all(|x| (0.0..2500.0).contains(x)), "{t:?}");
    }
    let text = sweep::plan::render(&spec, &plan);
    assert!(
        text.contains("poisson arrivals over 2.5 s per unit"),
        "{text}"
    );
}

/// Every experiment file the project ships validates and plans (run from the checkout, as
/// their relative paths expect): a file the README points to is never stale.
#[test]
fn every_shipped_experiment_validates() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .arg("plan")
            .arg(&f)
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
