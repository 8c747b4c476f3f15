//! Aggregation benchmark: the full `analysis::analyze_frame` (polars aggregation from a
//! parquet scan + per-rep statistics, comparisons, axis tests) over 10 million synthetic
//! records. Compare with `benches/aggregate_pandas.py` on the same file.
//!
//!   cargo bench --bench aggregate -- gen /tmp/sweep_bench_10m.parquet      # write data
//!   cargo bench --bench aggregate -- run /tmp/sweep_bench_10m.parquet      # time it
//!   (no arguments: gen if missing, then run; ROWS=… overrides 10 000 000)
//!
//! `run` prints one JSON line with wall times, so that `/usr/bin/time -v` on the built
//! binary measures the peak RSS of the analysis alone.

use polars::prelude::*;

/// The allocator the `sweep` binary uses (src/main.rs), so the bench measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;
use sweep::analysis::{self, AnalysisOptions, Source};

const CELLS: usize = 100;
const REPS: u32 = 20;
const CHUNK: usize = 1_000_000;

fn cell_meta(c: usize) -> (String, String, String) {
    if c == 0 {
        return ("baseline-00000000".into(), "baseline".into(), "{}".into());
    }
    let ctx = [256, 512, 1024, 2048, 4096][c % 5];
    let temp = 0.1 * (c / 5) as f64;
    (
        format!("chimera-{c:08x}"),
        "chimera".into(),
        format!("{{\"num_ctx\":{ctx},\"temperature\":{temp:.1}}}"),
    )
}

/// Rows [start, start + n) of the synthetic run: cells × reps × calls, with 1% warm-up,
/// 1% cold and 1% failed calls.
fn chunk(start: usize, n: usize, rows: usize, rng: &mut ChaCha8Rng) -> PolarsResult<DataFrame> {
    let per_cell = rows.div_ceil(CELLS);
    let per_rep = per_cell.div_ceil(REPS as usize);
    let metas: Vec<(String, String, String)> = (0..CELLS).map(cell_meta).collect();
    let mut cell_id = Vec::with_capacity(n);
    let mut arm = Vec::with_capacity(n);
    let mut options = Vec::with_capacity(n);
    let mut rep = Vec::with_capacity(n);
    let mut order = Vec::with_capacity(n);
    let (mut warmup, mut cold, mut ok) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut m: Vec<Vec<Option<f64>>> = (0..8).map(|_| Vec::with_capacity(n)).collect();
    let mut tokens = Vec::with_capacity(n);
    let mut wall = Vec::with_capacity(n);
    for i in start..start + n {
        let c = (i / per_cell).min(CELLS - 1);
        let r = ((i % per_cell) / per_rep) as u32;
        let (id, a, o) = &metas[c];
        cell_id.push(id.as_str());
        arm.push(a.as_str());
        options.push(o.as_str());
        rep.push(r);
        order.push((c * REPS as usize + r as usize) as u64);
        let u: f64 = rng.gen();
        warmup.push(u < 0.01);
        cold.push((0.01..0.02).contains(&u));
        let good = !(0.02..0.03).contains(&u);
        ok.push(good);
        let slow = 1.0 + 0.002 * c as f64;
        let ttft = 700.0 * slow * rng.gen_range(0.9..1.1);
        let tps = 40.0 / slow * rng.gen_range(0.95..1.05);
        let out = rng.gen_range(100..140u64);
        let eval = out as f64 / tps * 1000.0;
        let e2e = ttft + eval * 1.01;
        let vals = [
            ttft,
            e2e,
            1000.0 / tps,
            tps,
            (out - 1) as f64 / ((e2e - ttft) / 1000.0),
            ttft * 0.9,
            eval,
            0.0,
        ];
        for (k, v) in vals.into_iter().enumerate() {
            m[k].push(good.then_some(v));
        }
        tokens.push(good.then_some(out));
        wall.push(e2e + 10.0);
    }
    let names = [
        "ttft_ms",
        "e2e_ms",
        "itl_p50_ms",
        "decode_tps",
        "e2e_tps",
        "prompt_eval_ms",
        "eval_ms",
        "load_ms",
    ];
    let mut cols: Vec<Column> = vec![
        Series::new("experiment".into(), vec!["bench"; n]).into(),
        Series::new("run_id".into(), vec!["run-bench"; n]).into(),
        Series::new("arm".into(), arm).into(),
        Series::new("cell_id".into(), cell_id).into(),
        Series::new("options".into(), options).into(),
        Series::new("agent".into(), vec!["single"; n]).into(),
        Series::new("phase".into(), vec!["single"; n]).into(),
        Series::new("rep".into(), rep).into(),
        Series::new("warmup".into(), warmup).into(),
        Series::new("order".into(), order).into(),
        Series::new("ok".into(), ok).into(),
        Series::new("cold".into(), cold).into(),
        Series::new("output_tokens".into(), tokens).into(),
        Series::new("phase_wall_ms".into(), wall).into(),
    ];
    for (name, v) in names.iter().zip(m) {
        cols.push(Series::new((*name).into(), v).into());
    }
    DataFrame::new(n, cols)
}

fn generate(path: &Path, rows: usize) -> PolarsResult<()> {
    let t = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let first = chunk(0, CHUNK.min(rows), rows, &mut rng)?;
    let file = std::fs::File::create(path)?;
    let mut w = ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .batched(first.schema())?;
    w.write_batch(&first)?;
    let mut start = first.height();
    while start < rows {
        let n = CHUNK.min(rows - start);
        w.write_batch(&chunk(start, n, rows, &mut rng)?)?;
        start += n;
    }
    w.finish()?;
    eprintln!(
        "wrote {rows} rows to {} in {:.1} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let lf = sweep::store::columnar::scan_parquet(path)?;
    let a = analysis::analyze_frame(lf, Source::Parquet, 0, None, &AnalysisOptions::default())?;
    let total = t.elapsed().as_secs_f64();
    let measured: u32 = a.cells.iter().map(|c| c.counts.measured).sum();
    let calls: u32 = a.cells.iter().map(|c| c.counts.calls).sum();
    println!(
        "{{\"impl\":\"rust-polars\",\"rows\":{calls},\"measured\":{measured},\"cells\":{},\"comparisons\":{},\"seconds\":{total:.3}}}",
        a.cells.len(),
        a.comparisons.len()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // cargo bench passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not generate 10 million records then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("aggregate bench: run with `cargo bench --bench aggregate -- [gen|run] [FILE]`");
        return Ok(());
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let default = "/tmp/sweep_bench_10m.parquet".to_string();
    match args.first().map(String::as_str) {
        Some("gen") => generate(Path::new(args.get(1).unwrap_or(&default)), rows)?,
        Some("run") => run(Path::new(args.get(1).unwrap_or(&default)))?,
        _ => {
            let p = Path::new(&default);
            if !p.exists() {
                generate(p, rows)?;
            }
            run(p)?;
        }
    }
    Ok(())
}
