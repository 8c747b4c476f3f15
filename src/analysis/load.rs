//! Records ⇄ polars: the column layout of `records.parquet`, the writer the store calls at
//! the end of a run, and the loader that prefers the parquet file and falls back to the
//! crash-safe `records.jsonl` log (a torn last line is skipped and counted).

use super::AnalysisError;
use crate::record::Record;
use polars::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// File names inside a run directory.
pub const RECORDS_JSONL: &str = "records.jsonl";
pub const RECORDS_PARQUET: &str = "records.parquet";

/// Which file the records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Parquet,
    Jsonl,
}

/// The records of a run, as a lazy frame (so that a scan reads only the columns used).
pub struct Loaded {
    pub frame: LazyFrame,
    pub source: Source,
    pub path: PathBuf,
    /// 1 when the log's last line was cut mid-write (a crash); that line is skipped.
    pub torn_lines: usize,
}

/// Reads `records.parquet` if present, else `records.jsonl`.
pub fn load(run_dir: &Path) -> Result<Loaded, AnalysisError> {
    let pq = run_dir.join(RECORDS_PARQUET);
    if pq.is_file() {
        let frame = scan_parquet(&pq)?;
        return Ok(Loaded {
            frame,
            source: Source::Parquet,
            path: pq,
            torn_lines: 0,
        });
    }
    let jl = run_dir.join(RECORDS_JSONL);
    if !jl.is_file() {
        return Err(AnalysisError::NoRecords(run_dir.to_path_buf()));
    }
    let (records, torn_lines) = read_jsonl(&jl)?;
    Ok(Loaded {
        frame: records_to_frame(&records)?.lazy(),
        source: Source::Jsonl,
        path: jl,
        torn_lines,
    })
}

/// Lazy scan of a parquet file of records.
pub fn scan_parquet(path: &Path) -> Result<LazyFrame, AnalysisError> {
    let p = path
        .to_str()
        .ok_or_else(|| AnalysisError::Path(path.to_path_buf()))?;
    Ok(LazyFrame::scan_parquet(
        PlRefPath::new(p),
        ScanArgsParquet::default(),
    )?)
}

/// Parses the JSONL log. A last line that does not parse is a torn write (counted); a bad
/// line anywhere else is corruption and an error with its line number.
pub fn read_jsonl(path: &Path) -> Result<(Vec<Record>, usize), AnalysisError> {
    let file = std::fs::File::open(path).map_err(|e| AnalysisError::Io(path.to_path_buf(), e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| AnalysisError::Io(path.to_path_buf(), e))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut out = Vec::with_capacity(lines.len());
    let mut torn = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) => out.push(r),
            Err(_) if Some(i) == last => torn += 1,
            Err(e) => {
                return Err(AnalysisError::BadRecord {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok((out, torn))
}

fn strs<'a>(rs: &'a [Record], f: impl Fn(&'a Record) -> &'a str) -> Vec<&'a str> {
    rs.iter().map(f).collect()
}

fn f64s(rs: &[Record], f: impl Fn(&Record) -> Option<f64>) -> Vec<Option<f64>> {
    rs.iter().map(f).collect()
}

/// One row per record. `options` is kept as its JSON text (heterogeneous values);
/// `itl_ms` as a list column.
pub fn records_to_frame(rs: &[Record]) -> Result<DataFrame, AnalysisError> {
    let options: Vec<String> = rs
        .iter()
        .map(|r| serde_json::to_string(&r.options).unwrap_or_else(|_| "{}".into()))
        .collect();
    let itl: Vec<Series> = rs
        .iter()
        .map(|r| Series::new("".into(), r.itl_ms.as_slice()))
        .collect();
    let itl = if rs.is_empty() {
        Series::new_empty(
            "itl_ms".into(),
            &DataType::List(Box::new(DataType::Float64)),
        )
    } else {
        Series::new("itl_ms".into(), itl)
    };
    let cols: Vec<Column> = vec![
        Series::new("experiment".into(), strs(rs, |r| &r.experiment)).into(),
        Series::new("run_id".into(), strs(rs, |r| &r.run_id)).into(),
        Series::new("arm".into(), strs(rs, |r| &r.arm)).into(),
        Series::new("cell_id".into(), strs(rs, |r| &r.cell_id)).into(),
        Series::new("options".into(), options).into(),
        Series::new("agent".into(), strs(rs, |r| &r.agent)).into(),
        Series::new("persona".into(), strs(rs, |r| &r.persona)).into(),
        Series::new("phase".into(), strs(rs, |r| r.phase.as_str())).into(),
        Series::new("stage".into(), strs(rs, |r| r.stage.as_str())).into(),
        Series::new("rep".into(), rs.iter().map(|r| r.rep).collect::<Vec<u32>>()).into(),
        Series::new(
            "warmup".into(),
            rs.iter().map(|r| r.warmup).collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "order".into(),
            rs.iter().map(|r| r.order as u64).collect::<Vec<_>>(),
        )
        .into(),
        Series::new("timestamp".into(), strs(rs, |r| &r.timestamp)).into(),
        Series::new("model".into(), strs(rs, |r| &r.model)).into(),
        Series::new("endpoint".into(), strs(rs, |r| &r.endpoint)).into(),
        Series::new("ok".into(), rs.iter().map(|r| r.ok).collect::<Vec<_>>()).into(),
        Series::new(
            "error_kind".into(),
            rs.iter()
                .map(|r| r.error_kind.as_deref())
                .collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "error_message".into(),
            rs.iter()
                .map(|r| r.error_message.as_deref())
                .collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "attempts".into(),
            rs.iter().map(|r| r.attempts).collect::<Vec<_>>(),
        )
        .into(),
        Series::new("ttft_ms".into(), f64s(rs, |r| r.ttft_ms)).into(),
        itl.into(),
        Series::new("itl_p50_ms".into(), f64s(rs, |r| r.itl_p50_ms)).into(),
        Series::new("e2e_ms".into(), f64s(rs, |r| r.e2e_ms)).into(),
        Series::new("load_ms".into(), f64s(rs, |r| r.load_ms)).into(),
        Series::new("prompt_eval_ms".into(), f64s(rs, |r| r.prompt_eval_ms)).into(),
        Series::new("eval_ms".into(), f64s(rs, |r| r.eval_ms)).into(),
        Series::new("total_ms".into(), f64s(rs, |r| r.total_ms)).into(),
        Series::new(
            "prompt_tokens".into(),
            rs.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "output_tokens".into(),
            rs.iter().map(|r| r.output_tokens).collect::<Vec<_>>(),
        )
        .into(),
        Series::new("decode_tps".into(), f64s(rs, |r| r.decode_tps)).into(),
        Series::new("e2e_tps".into(), f64s(rs, |r| r.e2e_tps)).into(),
        Series::new("cold".into(), rs.iter().map(|r| r.cold).collect::<Vec<_>>()).into(),
        Series::new(
            "cache_defeated".into(),
            rs.iter().map(|r| r.cache_defeated).collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "start_offset_ms".into(),
            f64s(rs, |r| Some(r.start_offset_ms)),
        )
        .into(),
        Series::new("end_offset_ms".into(), f64s(rs, |r| Some(r.end_offset_ms))).into(),
        Series::new("phase_wall_ms".into(), f64s(rs, |r| Some(r.phase_wall_ms))).into(),
        Series::new("agent_wall_ms".into(), f64s(rs, |r| Some(r.agent_wall_ms))).into(),
        Series::new("ingest_ms".into(), f64s(rs, |r| Some(r.ingest_ms))).into(),
    ];
    Ok(DataFrame::new(rs.len(), cols)?)
}

/// Writes the records as parquet (zstd) — called by the store at the end of a run.
/// Written to a temporary name first and renamed, so a crash never leaves half a file
/// that `load` would prefer over the log.
pub fn write_parquet(path: &Path, records: &[Record]) -> Result<(), AnalysisError> {
    let mut df = records_to_frame(records)?;
    write_frame(path, &mut df)
}

/// Writes any frame as parquet via a temporary file + rename.
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<(), AnalysisError> {
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| AnalysisError::Io(tmp.clone(), e))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)?;
    std::fs::rename(&tmp, path).map_err(|e| AnalysisError::Io(path.to_path_buf(), e))?;
    Ok(())
}
