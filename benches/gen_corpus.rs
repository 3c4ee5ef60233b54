//! Writes a seeded CloudTrail corpus as CloudTrail delivers it to S3:
//! gzip log files under `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`.
//!
//! `cargo run --release --example gen-corpus -- OUT_DIR [RECORDS] [PER_FILE] [SEED] [mix]`
//!
//! With `mix`, also writes as many Kubernetes audit events (`k8s/*.log`, the
//! log backend's NDJSON) and GitHub webhook deliveries (`github/*.ndjson`).

#[path = "corpus.rs"]
mod corpus;

use std::io::Write;

/// Dates a file `secs` after 2024-03-01T00:00:00Z, when it would have been
/// delivered: the corpus is settled data, as a backfill reads, not files
/// being written (which trailship reads with care for a while after they
/// change; see its README, "The archive").
fn delivered(path: &str, secs: u64) -> std::io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_200 + secs);
    std::fs::File::options().write(true).open(path)?.set_modified(t)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: gen-corpus OUT_DIR [RECORDS=200000] [PER_FILE=1000] [SEED=1]");
        std::process::exit(2);
    };
    let num = |i: usize, d: u64| args.get(i).map_or(Ok(d), |s| s.parse::<u64>()).expect("a number");
    let (records, per_file, seed) = (num(2, 200_000), num(3, 1000).max(1), num(4, 1));
    let mut rng = corpus::Rng::new(seed);
    let (mut written, mut file, mut json_bytes, mut gz_bytes) = (0u64, 0u64, 0u64, 0u64);
    while written < records {
        let n = per_file.min(records - written);
        let corpus::LogFile { account, region, body } = corpus::log_file(&mut rng, written, n);
        // Where and under which name CloudTrail delivers the file: its
        // account, region and the day and minute of its first record.
        let secs = corpus::record_secs(written);
        let (day, hhmm) = (1 + (secs / 86_400) % 28, (secs / 3600) % 24 * 100 + (secs / 60) % 60);
        let dir = format!("{out}/AWSLogs/{account}/CloudTrail/{region}/2024/03/{day:02}");
        std::fs::create_dir_all(&dir)?;
        let path = format!("{dir}/{account}_CloudTrail_{region}_202403{day:02}T{hhmm:04}Z_{file:06}.json.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes())?;
        let gz = gz.finish()?;
        std::fs::write(&path, &gz)?;
        delivered(&path, (day - 1) * 86_400 + hhmm / 100 * 3600 + hhmm % 100 * 60 + 300)?;
        json_bytes += body.len() as u64;
        gz_bytes += gz.len() as u64;
        written += n;
        file += 1;
    }
    if args.get(5).map(String::as_str) == Some("mix") {
        for (dir, ext, make) in [
            ("k8s", "log", corpus::k8s_event as fn(&mut corpus::Rng, u64, &mut String)),
            ("github", "ndjson", corpus::github_delivery),
        ] {
            std::fs::create_dir_all(format!("{out}/{dir}"))?;
            let (mut done, mut n) = (0u64, 0u64);
            while done < records {
                let count = per_file.min(records - done);
                let body = corpus::ndjson(&mut rng, count, make);
                let path = format!("{out}/{dir}/part-{n:05}.{ext}");
                std::fs::write(&path, body)?;
                delivered(&path, 28 * 86_400)?;
                done += count;
                n += 1;
            }
            println!("{records} {dir} records in {n} files");
        }
    }
    println!(
        "{records} records in {file} files: {:.1} MB of JSON, {:.1} MB gzip, {:.0} bytes/record",
        json_bytes as f64 / 1e6,
        gz_bytes as f64 / 1e6,
        json_bytes as f64 / records.max(1) as f64
    );
    Ok(())
}
