//! The `trailship` command line: the edge where typed errors get context.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use trailship::normalize::SourceKind;
use trailship::pipeline::{self, Options, Summary};
use trailship::{samples, source};

#[derive(Parser)]
#[command(name = "trailship", version, about = "Audit logs → OCSF → tamper-evident Parquet archive")]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `trailship=debug`.
    #[arg(long, global = true, default_value = "warn", env = "TRAILSHIP_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Source {
    Auto,
    Cloudtrail,
    K8sAudit,
    Github,
    Gitlab,
}

#[derive(Subcommand)]
enum Command {
    /// Normalise audit logs from files or directories into an OCSF Parquet archive.
    Normalize {
        /// Archive directory (created if missing).
        #[arg(long, default_value = "trailship-archive")]
        out: PathBuf,
        /// Input files or directories (recursive; `.gz` read transparently).
        /// Without any, the embedded sample logs are used.
        paths: Vec<PathBuf>,
        /// Source family of the inputs.
        #[arg(long, value_enum, default_value_t = Source::Auto)]
        source: Source,
        /// Keep each record's original text in the `raw_data` column.
        #[arg(long)]
        raw_data: bool,
        /// Records nested deeper than this are dead-lettered.
        #[arg(long, default_value_t = 64)]
        max_depth: usize,
        /// Records larger than this (bytes) are dead-lettered.
        #[arg(long, default_value_t = 4 << 20)]
        max_record_bytes: usize,
        /// Rows per Parquet row group.
        #[arg(long, default_value_t = 64 * 1024)]
        row_group_rows: usize,
        /// Close a Parquet object once it reaches this many bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_file_bytes: usize,
        /// zstd compression level (1-22).
        #[arg(long, default_value_t = 3)]
        zstd_level: i32,
        /// Input bytes between checkpoints; objects become visible at checkpoints.
        #[arg(long, default_value_t = 1 << 30)]
        checkpoint_bytes: u64,
        /// Configuration file (TOML; see README "Configuration").
        #[arg(long)]
        config: Option<PathBuf>,
        /// Turn secret redaction off (secrets then reach the archive in clear).
        #[arg(long)]
        no_redact: bool,
    },
    /// Validate CloudTrail digest chains and the log files they list
    /// (`aws cloudtrail validate-logs`, stricter). Exit 0: everything valid;
    /// 1: something invalid or missing; 2: bad arguments; 3: could not validate.
    ValidateDigests(ValidateArgs),
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The trail: arn:aws:cloudtrail:HOME-REGION:ACCOUNT:trail/NAME.
    #[arg(long)]
    trail_arn: String,
    /// Start of the range (RFC 3339; a bare date or time is UTC).
    #[arg(long)]
    start_time: String,
    /// End of the range (default: now).
    #[arg(long)]
    end_time: Option<String>,
    /// Bucket the trail delivers to.
    #[arg(long)]
    s3_bucket: String,
    /// Key prefix of the trail, if any.
    #[arg(long)]
    s3_prefix: Option<String>,
    /// Member account of an organization trail (default: the ARN's account).
    #[arg(long)]
    account_id: Option<String>,
    /// Organization id of an organization trail (`AWSLogs/<o-id>/<account>/...`).
    #[arg(long)]
    organization_id: Option<String>,
    /// Source regions to validate (repeat or comma-separate; default: every region found).
    #[arg(long = "source-region", value_delimiter = ',')]
    source_regions: Vec<String>,
    /// A ListPublicKeys answer (`aws cloudtrail list-public-keys > FILE`), for air-gapped audits.
    #[arg(long)]
    public_keys: Option<PathBuf>,
    /// Validate a local copy of the bucket instead of S3: DIR/<bucket>/<key>
    /// or DIR/<key>; a digest's S3 metadata, when kept, in `<file>.metadata.json`.
    #[arg(long)]
    local: Option<PathBuf>,
    /// S3-compatible endpoint (path-style addressing).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region of the bucket's S3 client (default: the AWS configuration's).
    #[arg(long)]
    region: Option<String>,
    /// Log files fetched and hashed at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// List every object, valid ones too.
    #[arg(long)]
    verbose: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat, filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_format, &cli.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    if let Command::ValidateDigests(args) = cli.command {
        return validate_digests(args);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Normalize {
            out,
            paths,
            source,
            raw_data,
            max_depth,
            max_record_bytes,
            row_group_rows,
            max_file_bytes,
            zstd_level,
            checkpoint_bytes,
            config,
            no_redact,
        } => {
            let cfg = match &config {
                Some(path) => trailship::config::Config::load(path)?,
                None => trailship::config::Config::default(),
            };
            let mut opts = Options {
                out: out.clone(),
                raw_data,
                max_file_bytes,
                checkpoint_bytes,
                redaction: cfg.redaction,
                ..Options::default()
            };
            if no_redact {
                opts.redaction.enabled = false;
            }
            opts.normalize.k8s_final_stage_only = cfg.kubernetes.final_stage_only;
            opts.normalize.github_webhook_secret =
                std::env::var(&cfg.github.webhook_secret_env).ok().filter(|s| !s.is_empty()).map(String::into_bytes);
            opts.limits.max_depth = max_depth;
            opts.limits.max_record_bytes = max_record_bytes;
            opts.encode.row_group_rows = row_group_rows;
            opts.encode.zstd_level = zstd_level;
            opts.source = match source {
                Source::Auto => SourceKind::Auto,
                Source::Cloudtrail => SourceKind::CloudTrail,
                Source::K8sAudit => SourceKind::K8sAudit,
                Source::Github => SourceKind::GitHub,
                Source::Gitlab => SourceKind::GitLab,
            };
            let embedded = paths.is_empty();
            let inputs =
                if embedded { samples::inputs() } else { source::expand(&paths).context("check the input paths")? };
            let started = std::time::Instant::now();
            let summary =
                pipeline::run(&opts, &inputs).with_context(|| format!("normalising into {}", out.display()))?;
            print_summary(&summary, &out, embedded, started.elapsed());
            Ok(())
        }
        Command::ValidateDigests(_) => unreachable!("handled in main"),
    }
}

fn validate_digests(a: ValidateArgs) -> ExitCode {
    use trailship::integrity::{keys::KeySet, store, validate};
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    let mut trail = match validate::Trail::from_arn(&a.trail_arn) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    if let Some(acct) = a.account_id {
        trail.account = acct;
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let Some(start_ms) = validate::parse_time(&a.start_time) else {
        return usage(format!("--start-time {:?} is not a time (RFC 3339 or YYYY-MM-DD)", a.start_time));
    };
    let end_ms = match a.end_time.as_deref().map(validate::parse_time) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => return usage(format!("--end-time {:?} is not a time", a.end_time.unwrap_or_default())),
    };
    let Some(key_file) = a.public_keys else {
        return usage("--public-keys FILE is required: fetching keys with ListPublicKeys is not built yet".into());
    };
    let keys = match KeySet::from_file(&key_file) {
        Ok(k) => k,
        Err(e) => return usage(format!("{e}")),
    };
    let st: Box<dyn store::Store> = match a.local {
        Some(dir) => Box::new(store::LocalStore::new(dir)),
        None => match trailship::integrity::s3::S3Store::new(a.endpoint_url.as_deref(), a.region.as_deref()) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(3);
            }
        },
    };
    let opts = validate::Options {
        bucket: a.s3_bucket,
        prefix: a.s3_prefix,
        org_id: a.organization_id,
        trail,
        regions: a.source_regions,
        start_ms,
        end_ms,
        concurrency: a.concurrency,
        now_ms: now,
    };
    let report = match validate::validate(st.as_ref(), &keys, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match a.format {
        ReportFormat::Text => report.write_text(&mut out, a.verbose),
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from).and_then(|()| {
                use std::io::Write;
                writeln!(out)
            })
        }
    };
    if let Err(e) = written {
        eprintln!("error: writing the report: {e}");
        return ExitCode::from(3);
    }
    if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn print_summary(s: &Summary, out: &std::path::Path, embedded: bool, took: std::time::Duration) {
    let src = if embedded { " (embedded samples)" } else { "" };
    let secs = took.as_secs_f64().max(1e-9);
    println!(
        "read {} records from {} inputs{src} ({} skipped: already archived)",
        s.records_read, s.inputs_processed, s.inputs_skipped
    );
    println!(
        "{:.1} MB of JSON in {:.2}s: {:.0} events/s, {:.1} MB/s (one core)",
        s.bytes_read as f64 / 1e6,
        secs,
        s.records_read as f64 / secs,
        s.bytes_read as f64 / 1e6 / secs
    );
    println!("rows written: {}", s.rows_total());
    for (class, n) in &s.rows {
        println!("  {:<16} {:>10}  ({}, class_uid {})", class.dataset(), n, class.name(), class.uid());
    }
    println!("dead letters: {}", s.dead_total());
    for (reason, n) in &s.dead_letters {
        println!("  {:<24} {:>10}", reason.as_str(), n);
    }
    println!("repaired (invalid UTF-8 replaced, row kept): {}", s.repaired);
    if s.filtered > 0 {
        println!("filtered by configuration (not dead letters): {}", s.filtered);
    }
    match &s.redaction_key {
        None => println!("redaction: OFF"),
        Some((id, ephemeral)) => {
            let n: u64 = s.redactions.values().sum();
            let note = if *ephemeral {
                ", random for this run: set TRAILSHIP_REDACTION_KEY to keep fingerprints stable"
            } else {
                ""
            };
            println!("redactions (values, by type): {n}  (key id {id}{note})");
            for (ty, n) in &s.redactions {
                println!("  {ty:<24} {n:>10}");
            }
        }
    }
    println!("objects committed: {}", s.objects.len());
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    println!("\narchive: {}", abs.display());
    if s.dead_total() > 0 {
        println!("dead letters: {}/_dead_letter/", abs.display());
    }
    println!(
        "try: duckdb -c \"SELECT time_dt, api.operation, actor.user.uid, status FROM read_parquet('{}/api_activity/**/*.parquet', hive_partitioning=true) ORDER BY time LIMIT 10\"",
        abs.display()
    );
}
