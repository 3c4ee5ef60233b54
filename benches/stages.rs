//! trailship's stages one at a time on a corpus directory's gzip CloudTrail
//! log files, held in memory (no disk): inflate, decode (each log file
//! parsed whole by simd-json, as the pipeline does), normalise (into column batches), normalise with redaction,
//! and encode (column batches → zstd Parquet, hashed). Best of three runs;
//! MB/s of input JSON. Run pinned to one core by `benches/peers.sh`.
//!
//! `cargo run --release --example stages -- CORPUS_DIR [MAX_MB=300]`

#[path = "stage.rs"]
mod stage;

use std::io::Read;
use std::time::{Duration, Instant};

use trailship::batch::Batcher;
use trailship::encode::{EncodeOptions, writer_properties};
use trailship::normalize::{Normalizer, SourceKind};
use trailship::redact::{RedactionConfig, Redactor};

fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("ran"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: stages CORPUS_DIR [MAX_MB=300]");
        std::process::exit(2);
    };
    let max_bytes = args.get(2).map_or(300, |s| s.parse::<u64>().expect("MAX_MB is a number")) * 1_000_000;
    let mut paths: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    paths.sort();
    let (mut gz, mut json_bytes) = (Vec::new(), 0u64);
    for p in paths {
        let bytes = std::fs::read(&p).expect("read corpus file");
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut text).expect("gzip");
        json_bytes += text.len() as u64;
        gz.push(bytes);
        if json_bytes >= max_bytes {
            break;
        }
    }
    let (t, texts) = best(|| {
        gz.iter()
            .map(|g| {
                // As the run reads a log file: one member, inflated whole.
                let mut text = Vec::new();
                let mut gzip =
                    trailship::source::gzip::Gzip::new(Box::new(std::io::Cursor::new(g.clone())), Some(g.len() as u64));
                gzip.inflate_whole(&mut text, usize::MAX >> 1).expect("one gzip member");
                text
            })
            .collect::<Vec<_>>()
    });
    let mut rows = 0u64;
    let report = |stage: &str, t: Duration, rows: u64| {
        let s = t.as_secs_f64();
        println!(
            "{stage:<28} {:>8.3} s {:>9.1} MB/s {:>10.0} events/s",
            s,
            json_bytes as f64 / 1e6 / s,
            rows as f64 / s
        );
    };
    let (mut parser, mut norm) = (stage::Decoder::default(), Normalizer::new(SourceKind::Auto));
    let mut batcher = Batcher::default();
    // Row count first, for events/s of every line.
    for text in &texts {
        rows += stage::normalise(text, &mut parser, &mut norm, &mut batcher);
        batcher.take_all();
    }
    println!("{} files, {rows} records, {:.1} MB of JSON", texts.len(), json_bytes as f64 / 1e6);
    report("inflate (gzip)", t, rows);

    let (t, _) = best(|| texts.iter().map(|text| stage::decode(text, &mut parser)).sum::<u64>());
    report("decode (simd-json)", t, rows);

    let (t, _) = best(|| {
        for text in &texts {
            stage::normalise(text, &mut parser, &mut norm, &mut batcher);
            batcher.take_all();
        }
    });
    report("decode + normalise", t, rows);

    let redactor = std::sync::Arc::new(Redactor::new(&RedactionConfig::default()).expect("default redaction"));
    let mut red_batcher = Batcher::new(Some(redactor.clone()));
    let (t, _) = best(|| {
        for text in &texts {
            stage::normalise_redacted(text, &mut parser, &mut norm, &mut red_batcher, Some(&redactor));
            red_batcher.take_all();
        }
    });
    report("decode + normalise + redact", t, rows);

    // Batches as the pipeline cuts them: a partition's batch is taken once
    // the buffer bound (64 MiB) is reached, idle partitions first (a round
    // is a log file here, where the pipeline's is a few).
    let mut batches = Vec::new();
    for text in &texts {
        stage::normalise_redacted(text, &mut parser, &mut norm, &mut red_batcher, Some(&redactor));
        while red_batcher.buffered_bytes() > 64 << 20 {
            batches.extend(red_batcher.take_evictable(4 << 20));
        }
        red_batcher.next_round();
    }
    batches.extend(red_batcher.take_all());
    let props = writer_properties(&EncodeOptions::default()).expect("default properties");
    let (t, out) = best(|| stage::encode(&batches, &props));
    report("encode (zstd Parquet)", t, rows);
    println!("encoded {} batches into {:.1} MB of Parquet", batches.len(), out as f64 / 1e6);
}
