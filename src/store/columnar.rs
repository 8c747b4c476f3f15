//! Records ⇄ polars: the column layout of `records.parquet`, the writer that finishes a
//! run, and the loader that analysis and the gate use. The loader trusts `records.parquet`
//! only when it still matches the digest the run recorded when it finished (and the log's
//! size has not changed since); otherwise — a damaged or stale parquet, a log edited after
//! the fact, an unfinished run — it builds the frame from `records.jsonl` through the one
//! records reader, and says why.

use super::{
    atomic, io, read_records, Manifest, RecordsDigest, StoreError, RECORDS_JSONL, RECORDS_PARQUET,
};
use crate::record::Record;
use polars::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Which file the records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `records.parquet`, written when the run finished and still matching its digest.
    Parquet,
    /// `records.jsonl`, the log, read through [`read_records`].
    Jsonl,
}

/// The records of a run, as a lazy frame (so that a scan reads only the columns used).
pub struct Loaded {
    /// One row per record, in the column layout of `records.parquet`.
    pub frame: LazyFrame,
    /// Which file the rows came from.
    pub source: Source,
    /// That file's path.
    pub path: PathBuf,
    /// 1 when the log's last line was cut mid-write (a crash); that line is skipped.
    pub torn_lines: usize,
    /// Records of a last phase cut short by a crash (left out, as resume does).
    pub incomplete_records: usize,
    /// Records of phases replaced by a later `--retry-failed` attempt (kept, flagged).
    pub superseded: usize,
    /// Why the parquet copy was not used, when it exists.
    pub notes: Vec<String>,
}

fn polars_err(path: &Path, e: PolarsError) -> StoreError {
    StoreError::Columnar {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The records of the run in `dir`: `records.parquet` when it matches the finished run's
/// digest, else `records.jsonl`.
pub fn load(dir: &Path, manifest: &Manifest) -> Result<Loaded, StoreError> {
    let pq = dir.join(RECORDS_PARQUET);
    let jl = dir.join(RECORDS_JSONL);
    let mut notes = Vec::new();
    if pq.is_file() {
        match parquet_trusted(&pq, &jl, manifest) {
            Ok(()) => {
                return Ok(Loaded {
                    frame: scan_parquet(&pq)?,
                    source: Source::Parquet,
                    path: pq,
                    torn_lines: 0,
                    incomplete_records: 0,
                    superseded: manifest_superseded(manifest),
                    notes,
                })
            }
            Err(why) => {
                tracing::warn!(
                    "{}: not used ({why}); reading {RECORDS_JSONL}",
                    pq.display()
                );
                notes.push(format!("{RECORDS_PARQUET} not used: {why}"));
            }
        }
    }
    if !jl.is_file() {
        return Err(StoreError::NoRecords(dir.to_path_buf()));
    }
    let read = read_records(&jl)?;
    let frame = records_to_frame(&read.records).map_err(|e| polars_err(&jl, e))?;
    Ok(Loaded {
        frame: frame.lazy(),
        source: Source::Jsonl,
        path: jl,
        torn_lines: usize::from(read.torn_tail.is_some()),
        incomplete_records: read.incomplete_tail.map(|(n, _)| n).unwrap_or(0),
        superseded: read.superseded,
        notes,
    })
}

fn manifest_superseded(m: &Manifest) -> usize {
    m.records.as_ref().map(|d| d.superseded).unwrap_or(0)
}

/// Ok when the parquet file is what the finished run wrote and the log has not changed.
fn parquet_trusted(pq: &Path, jl: &Path, m: &Manifest) -> Result<(), String> {
    let Some(d) = &m.records else {
        return Err(
            "the run has no records digest (unfinished, or written by an older sweep)".into(),
        );
    };
    let jl_len = std::fs::metadata(jl).map(|x| x.len()).unwrap_or(0);
    if jl_len != d.jsonl_bytes {
        return Err(format!(
            "{RECORDS_JSONL} is {jl_len} bytes but was {} when the run finished: the log changed",
            d.jsonl_bytes
        ));
    }
    let Some(want) = &d.parquet_sha256 else {
        return Err("no parquet checksum recorded".into());
    };
    let got = sha256_file(pq).map_err(|e| e.to_string())?;
    if &got != want {
        return Err(
            "its sha256 differs from the one recorded when the run finished (damaged or replaced)"
                .into(),
        );
    }
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(crate::spec::hex(&h.finalize()))
}

/// Lazy scan of a parquet file of records.
pub fn scan_parquet(path: &Path) -> Result<LazyFrame, StoreError> {
    let p = path.to_str().ok_or_else(|| StoreError::Columnar {
        path: path.to_path_buf(),
        message: "path is not valid UTF-8".into(),
    })?;
    LazyFrame::scan_parquet(PlRefPath::new(p), ScanArgsParquet::default())
        .map_err(|e| polars_err(path, e))
}

fn strs<'a>(rs: &'a [Record], f: impl Fn(&'a Record) -> &'a str) -> Vec<&'a str> {
    rs.iter().map(f).collect()
}

fn f64s(rs: &[Record], f: impl Fn(&Record) -> Option<f64>) -> Vec<Option<f64>> {
    rs.iter().map(f).collect()
}

/// One row per record. `options` is kept as its JSON text (heterogeneous values);
/// `itl_ms` as a list column.
pub fn records_to_frame(rs: &[Record]) -> PolarsResult<DataFrame> {
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
        // Derived again from the record's own fields, so runs stored before the n − 1 rule
        // read the same as new ones.
        Series::new(
            "e2e_tps".into(),
            f64s(rs, |r| {
                crate::record::client_decode_tps(r.output_tokens, r.e2e_ms, r.ttft_ms)
            }),
        )
        .into(),
        Series::new("cold".into(), rs.iter().map(|r| r.cold).collect::<Vec<_>>()).into(),
        Series::new(
            "cold_reason".into(),
            rs.iter()
                .map(|r| r.cold_reason.map(|c| c.as_str()))
                .collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "tokens_source".into(),
            rs.iter()
                .map(|r| r.tokens_source.as_deref())
                .collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "retry".into(),
            rs.iter().map(|r| r.retry).collect::<Vec<_>>(),
        )
        .into(),
        Series::new(
            "superseded".into(),
            rs.iter().map(|r| r.superseded).collect::<Vec<_>>(),
        )
        .into(),
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
        // Open loop: planned start and send-time error of the call's agent run.
        Series::new("planned_start_ms".into(), f64s(rs, |r| r.planned_start_ms)).into(),
        Series::new("start_lag_ms".into(), f64s(rs, |r| r.start_lag_ms)).into(),
        // The server's queue over the call's phase (llama-server, vLLM or SGLang /metrics).
        Series::new(
            "queue_deferred_max".into(),
            f64s(rs, |r| r.server_queue.map(|q| f64::from(q.max_deferred))),
        )
        .into(),
        // The call's share of the GPUs' energy (telemetry), for the energy metrics.
        Series::new(
            "gpu_energy_j".into(),
            f64s(rs, |r| r.gpu.as_ref().and_then(|g| g.energy_j)),
        )
        .into(),
    ];
    DataFrame::new(rs.len(), cols)
}

/// Writes the records as parquet (zstd), atomically.
pub fn write_parquet(path: &Path, records: &[Record]) -> Result<(), StoreError> {
    let mut df = records_to_frame(records).map_err(|e| polars_err(path, e))?;
    write_frame(path, &mut df)
}

/// Writes any frame as parquet via a temporary file + rename.
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<(), StoreError> {
    let mut failure: Option<PolarsError> = None;
    let r = atomic::write_atomic_with(path, |f| {
        ParquetWriter::new(f)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(df)
            .map(drop)
            .map_err(|e| {
                let msg = e.to_string();
                failure = Some(e);
                std::io::Error::other(msg)
            })
    });
    match (r, failure) {
        (Err(_), Some(e)) => Err(polars_err(path, e)),
        (r, _) => r,
    }
}

/// Ends a run whose every planned phase is stored: writes `records.parquet` (the columnar
/// copy for analysis; the JSONL log stays the source of truth), the records digest and
/// `finished_at` into the manifest. A parquet that cannot be written is a warning, not a
/// failure: readers then use the log.
pub fn finish(dir: &Path, run_id: &str) -> Result<Manifest, StoreError> {
    let jl = dir.join(RECORDS_JSONL);
    let read = read_records(&jl)?;
    let pq = dir.join(RECORDS_PARQUET);
    let parquet_sha256 = match write_parquet(&pq, &read.records) {
        Ok(()) => sha256_file(&pq).ok(),
        Err(e) => {
            tracing::warn!(
                "run {run_id}: could not write {}: {e} (records.jsonl is complete; readers use it)",
                pq.display()
            );
            let _ = std::fs::remove_file(&pq);
            None
        }
    };
    let mut m = Manifest::read(dir)?;
    m.records = Some(RecordsDigest {
        count: read.records.len(),
        superseded: read.superseded,
        jsonl_bytes: std::fs::metadata(&jl).map_err(io(&jl))?.len(),
        parquet_sha256,
    });
    m.finished_at = Some(chrono::Utc::now().to_rfc3339());
    m.write(dir)?;
    Ok(m)
}
