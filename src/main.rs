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
    /// Normalise audit logs from files, directories or S3 into an OCSF Parquet archive.
    Normalize {
        /// Archive directory (created if missing).
        #[arg(long, default_value = "trailship-archive")]
        out: PathBuf,
        /// Input files or directories (recursive, skipping what trailship wrote; `.gz` read transparently),
        /// or s3://BUCKET/PREFIX (every object under it but CloudTrail digests).
        /// Without any, the embedded sample logs are used.
        paths: Vec<PathBuf>,
        /// S3 endpoint for s3:// inputs (S3-compatible stores; path-style addressing).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Region of the s3:// inputs' client (default: the AWS configuration's).
        #[arg(long)]
        region: Option<String>,
        /// Source family of the inputs.
        #[arg(long, value_enum, default_value_t = Source::Auto)]
        source: Source,
        /// Keep each record's original text in the `raw_data` column.
        #[arg(long)]
        raw_data: bool,
        /// Records nested deeper than this are dead-lettered.
        #[arg(long, default_value_t = 64)]
        max_depth: usize,
        /// Records larger than this (bytes, at least 1024) are dead-lettered.
        #[arg(long, default_value_t = 4 << 20)]
        max_record_bytes: usize,
        /// Rows per Parquet row group.
        #[arg(long, default_value_t = 64 * 1024)]
        row_group_rows: usize,
        /// Close a Parquet object once it reaches this many bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_file_bytes: usize,
        /// zstd compression level (1-22).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=22))]
        zstd_level: i32,
        /// Input bytes between checkpoints; objects become visible at checkpoints.
        #[arg(long, default_value_t = 1 << 30)]
        checkpoint_bytes: u64,
        /// Inputs processed at once, one thread each (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Configuration file (TOML; see README "Configuration").
        #[arg(long)]
        config: Option<PathBuf>,
        /// Turn secret redaction off (secrets then reach the archive in clear).
        #[arg(long)]
        no_redact: bool,
        /// Sign the archive's digest chain with this PKCS#8 key (RSA or
        /// Ed25519; overrides `[integrity] signing_key_file`).
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
    /// The service: consumer-group workers from Kafka to the archive
    /// (`[kafka]` and `[archive]` in the config; see deploy/trailship.toml).
    /// Without `[kafka]`, archives PATHS (or the embedded samples) into a
    /// local `[archive] location`, as `normalize` does.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// An S3-compatible endpoint for the archive (overrides `[archive] endpoint_url`).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Backfill inputs, when the config has no `[kafka]`.
        paths: Vec<PathBuf>,
    },
    /// Check a configuration file (environment interpolation, every section,
    /// redaction patterns) without connecting to anything.
    ValidateConfig { config: PathBuf },
    /// Write a new Ed25519 signing key for the archive's digest chain (PKCS#8 PEM).
    Keygen {
        /// Where to write the private key (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate CloudTrail digest chains and the log files they list
    /// (`aws cloudtrail validate-logs`, stricter), or trailship's own archive
    /// (`--archive`). Exit 0: everything valid; 1: something invalid or
    /// missing; 2: bad arguments; 3: could not validate.
    ValidateDigests(Box<ValidateArgs>),
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// The trail: arn:aws:cloudtrail:HOME-REGION:ACCOUNT:trail/NAME.
    #[arg(long, required_unless_present = "archive")]
    trail_arn: Option<String>,
    /// Start of the range: RFC 3339 (a bare date or time is UTC), or a while
    /// before now (`90m`, `26h`, `7d`) for a scheduled job.
    #[arg(long, required_unless_present = "archive")]
    start_time: Option<String>,
    /// End of the range, in the same forms (default: now).
    #[arg(long)]
    end_time: Option<String>,
    /// Bucket the trail delivers to (default: asked of DescribeTrails).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// Key prefix of the trail, if any (default: asked of DescribeTrails with the bucket).
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
    /// Public keys from a file instead of CloudTrail ListPublicKeys: a
    /// ListPublicKeys answer (`aws cloudtrail list-public-keys > FILE`), for
    /// air-gapped audits. With `--archive`: default `_digests/public-keys.json`
    /// of the archive, which proves consistency but not origin: pin your own copy.
    #[arg(long)]
    public_keys: Option<PathBuf>,
    /// Validate a local copy of the bucket instead of S3: DIR/<bucket>/<key>
    /// or DIR/<key>; a digest's S3 metadata, when kept, in `<file>.metadata.json`.
    #[arg(long)]
    local: Option<PathBuf>,
    /// Validate trailship's own archive (DIR or s3://BUCKET/PREFIX) instead of a trail.
    #[arg(long, conflicts_with_all = ["trail_arn", "local", "s3_bucket"])]
    archive: Option<String>,
    /// With `--archive`: objects written after the newest digest are pending,
    /// not invalid, for this many seconds.
    #[arg(long, default_value_t = 7200)]
    pending_grace_s: u64,
    /// S3 endpoint (S3-compatible stores; path-style addressing).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// CloudTrail API endpoint for ListPublicKeys and DescribeTrails (default: AWS's).
    #[arg(long)]
    cloudtrail_endpoint_url: Option<String>,
    /// Region of the bucket's S3 client (default: the AWS configuration's).
    #[arg(long)]
    region: Option<String>,
    /// Log files fetched and hashed at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Keep log files proven valid in FILE, and skip them when run again
    /// with the same FILE (resume an interrupted multi-year validation).
    #[arg(long)]
    resume: Option<PathBuf>,
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
    tune_allocator();
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_format, &cli.log) {
        eprintln!("error: {}", report(&e));
        return ExitCode::from(2);
    }
    if let Command::ValidateDigests(args) = cli.command {
        return validate_digests(*args);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes, each said once. The library's errors carry
/// their cause's text in their own, so that a log line alone is complete;
/// `{:#}` would then say it twice.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Normalize {
            out,
            paths,
            endpoint_url,
            region,
            source,
            raw_data,
            max_depth,
            max_record_bytes,
            row_group_rows,
            max_file_bytes,
            zstd_level,
            checkpoint_bytes,
            threads,
            config,
            no_redact,
            signing_key,
        } => {
            let cfg = match &config {
                Some(path) => trailship::config::Config::load(path)?,
                None => trailship::config::Config::default(),
            };
            let mut opts = base_options(&cfg);
            opts.out = out.clone();
            opts.raw_data = raw_data;
            opts.max_file_bytes = max_file_bytes;
            opts.checkpoint_bytes = checkpoint_bytes;
            if let Some(n) = threads {
                anyhow::ensure!(n > 0, "--threads must be at least 1");
                opts.threads = n;
            }
            if signing_key.is_some() {
                opts.integrity.signing_key_file = signing_key;
            }
            if no_redact {
                opts.redaction.enabled = false;
            }
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
            let s3 = source::object::S3Source::new(endpoint_url, region);
            let started = std::time::Instant::now();
            let summary =
                run_batch(&opts, &paths, &s3).with_context(|| format!("normalising into {}", out.display()))?;
            print_summary(&summary, &out, embedded, started.elapsed());
            Ok(())
        }
        Command::Run { config, endpoint_url, paths } => run_service(&config, endpoint_url, &paths),
        Command::ValidateConfig { config } => {
            let cfg = trailship::config::Config::load(&config)?;
            let opts = base_options(&cfg);
            if opts.redaction.enabled {
                trailship::redact::Redactor::new(&opts.redaction).context("[redaction]")?;
            }
            match &cfg.kafka {
                Some(k) => println!(
                    "{}: valid; group {} on {}, {} topic(s), archive {}{}",
                    config.display(),
                    k.group_id,
                    k.brokers,
                    k.topics.len(),
                    cfg.archive.location,
                    match &cfg.security_lake {
                        Some(l) => format!(", Parquet to the Security Lake at {}", l.location),
                        None => String::new(),
                    }
                ),
                None => println!("{}: valid; no [kafka]: backfill into {}", config.display(), cfg.archive.location),
            }
            Ok(())
        }
        Command::Keygen { out } => {
            use std::io::Write;
            let pem = trailship::integrity::chain::generate_ed25519_pem();
            let mut f = std::fs::OpenOptions::new();
            f.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
            let mut file = f.open(&out).with_context(|| format!("creating {} (never overwritten)", out.display()))?;
            file.write_all(pem.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            let key = trailship::integrity::chain::SigningKey::from_pkcs8(pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("generated key does not load: {e}"))?;
            println!("wrote Ed25519 signing key {} (fingerprint {})", out.display(), key.fingerprint());
            println!("use it: trailship normalize --signing-key {} ...", out.display());
            Ok(())
        }
        Command::ValidateDigests(_) => unreachable!("handled in main"),
    }
}

/// Stage options from a configuration file's sections.
fn base_options(cfg: &trailship::config::Config) -> Options {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut opts =
        Options { redaction: cfg.redaction.clone(), integrity: cfg.integrity.clone(), threads, ..Options::default() };
    opts.normalize.k8s_final_stage_only = cfg.kubernetes.final_stage_only;
    opts.normalize.github_webhook_secret =
        std::env::var(&cfg.github.webhook_secret_env).ok().filter(|s| !s.is_empty()).map(String::into_bytes);
    opts
}

/// The batch job over `paths`, or over the embedded samples when there are none.
fn run_batch(opts: &Options, paths: &[PathBuf], s3: &source::object::S3Source) -> Result<Summary> {
    if paths.is_empty() {
        return Ok(pipeline::run(opts, &samples::inputs())?);
    }
    let listing = source::Listing::new(paths, &opts.out, s3).context("check the input paths")?;
    Ok(pipeline::run(opts, &listing)?)
}

fn run_service(config: &std::path::Path, endpoint_url: Option<String>, paths: &[PathBuf]) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use trailship::service::{Health, Service, serve, topic_options};
    let mut cfg = trailship::config::Config::load(config)?;
    if endpoint_url.is_some() {
        cfg.archive.endpoint_url = endpoint_url;
    }
    let mut base = base_options(&cfg);
    if cfg.kafka.is_none() {
        anyhow::ensure!(
            !cfg.archive.location.starts_with("s3://"),
            "backfill from files writes a local archive; set [archive] location to a directory"
        );
        base.out = PathBuf::from(&cfg.archive.location);
        let embedded = paths.is_empty();
        // The archive's endpoint is the archive's: s3:// inputs use the AWS configuration.
        let s3 = source::object::S3Source::new(None, None);
        let started = std::time::Instant::now();
        let summary = run_batch(&base, paths, &s3).with_context(|| format!("archiving into {}", base.out.display()))?;
        print_summary(&summary, &base.out, embedded, started.elapsed());
        return Ok(());
    }
    let health = Arc::new(Health::default());
    if !cfg.service.listen.is_empty() {
        let addr = serve(&cfg.service.listen, Arc::clone(&health))
            .with_context(|| format!("serving metrics on {}", cfg.service.listen))?;
        tracing::info!(%addr, "metrics, /healthz and /readyz");
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    std::thread::Builder::new().name("trailship-signals".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: flushing, committing and exiting");
            flag.store(true, Ordering::Relaxed);
        });
    })?;
    let topic_opts = topic_options(&cfg, &base);
    let service = Service::new(&cfg, &topic_opts, shutdown, health)?;
    let s = service.run()?;
    tracing::info!(
        batches = s.batches,
        messages = s.messages,
        rows = s.rows,
        dead_letters = s.dead_letters,
        objects_created = s.objects_created,
        objects_existing = s.objects_existing,
        "stopped"
    );
    Ok(())
}

fn validate_digests(a: ValidateArgs) -> ExitCode {
    use trailship::integrity::{archive, cloudtrail_api::CloudTrailApi, keys::KeySet, s3::S3Store, store, validate};
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    let cannot = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(3)
    };
    let now = trailship::sink::now_ms();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let s3 = |region: Option<&str>| S3Store::new(a.endpoint_url.as_deref(), region);

    let report = if let Some(location) = &a.archive {
        let (bucket, prefix) = archive::ArchiveOptions::parse_location(location);
        let st: Box<dyn store::Store> = match &bucket {
            Some(_) => match s3(a.region.as_deref()) {
                Ok(s) => Box::new(s),
                Err(e) => return cannot(e.to_string()),
            },
            None => Box::new(store::LocalStore::new(location)),
        };
        let keys = match &a.public_keys {
            Some(f) => KeySet::from_file(f),
            None => match archive_keys(&*st, bucket.as_deref().unwrap_or(""), &prefix) {
                Ok(k) => Ok(k),
                Err(e) => return cannot(e),
            },
        };
        let keys = match keys {
            Ok(k) => k,
            Err(e) => return usage(e.to_string()),
        };
        let opts = archive::ArchiveOptions {
            bucket: bucket.unwrap_or_default(),
            prefix,
            location: location.clone(),
            concurrency: a.concurrency,
            now_ms: now,
            grace_ms: a.pending_grace_s.saturating_mul(1000) as i64,
            progress,
        };
        archive::validate_archive(st.as_ref(), &keys, &opts)
    } else {
        let arn = a.trail_arn.clone().unwrap_or_default();
        let mut trail = match validate::Trail::from_arn(&arn) {
            Ok(t) => t,
            Err(e) => return usage(e),
        };
        if let Some(acct) = a.account_id.clone() {
            trail.account = acct;
        }
        let start = a.start_time.clone().unwrap_or_default();
        let Some(start_ms) = validate::parse_time(&start) else {
            return usage(format!(
                "--start-time {start:?} is not a time (RFC 3339, YYYY-MM-DD, or 90m / 26h / 7d ago)"
            ));
        };
        let end_ms = match a.end_time.as_deref().map(validate::parse_time) {
            None => now,
            Some(Some(t)) => t,
            Some(None) => return usage(format!("--end-time {:?} is not a time", a.end_time.unwrap_or_default())),
        };
        // The CloudTrail API only when needed: air-gapped audits never touch it.
        let api = || CloudTrailApi::new(a.cloudtrail_endpoint_url.as_deref());
        let (bucket, prefix) = match (&a.s3_bucket, &a.local) {
            (Some(b), _) => (b.clone(), a.s3_prefix.clone()),
            (None, Some(_)) => return usage("--local needs --s3-bucket (the bucket the copy was made from)".into()),
            (None, None) => {
                let loc = match api()
                    .map_err(|e| e.to_string())
                    .and_then(|api| api.describe_trail(&trail.home_region, &arn).map_err(|e| e.to_string()))
                {
                    Ok(l) => l,
                    Err(e) => return cannot(format!("{e} (or pass --s3-bucket)")),
                };
                if loc.organization_trail && a.organization_id.is_none() {
                    return usage(format!(
                        "{arn} is an organization trail: pass --organization-id (the o-... in AWSLogs/<o-id>/)"
                    ));
                }
                (loc.bucket, a.s3_prefix.clone().or(loc.prefix))
            }
        };
        let resume = match &a.resume {
            Some(p) => match trailship::integrity::resume::Resume::open(p) {
                Ok(r) => Some(std::sync::Arc::new(r)),
                Err(e) => return usage(e.to_string()),
            },
            None => None,
        };
        let st: Box<dyn store::Store> = match &a.local {
            Some(dir) => Box::new(store::LocalStore::new(dir)),
            None => match s3(a.region.as_deref()) {
                Ok(s) => Box::new(s),
                Err(e) => return cannot(e.to_string()),
            },
        };
        let mut opts = validate::Options {
            bucket,
            prefix,
            org_id: a.organization_id.clone(),
            trail,
            regions: a.source_regions.clone(),
            start_ms,
            end_ms,
            concurrency: a.concurrency,
            now_ms: now,
            resume,
            progress,
        };
        let keys = match &a.public_keys {
            Some(f) => match KeySet::from_file(f) {
                Ok(k) => k,
                Err(e) => return usage(e.to_string()),
            },
            None => {
                let regions = match validate::regions(st.as_ref(), &opts) {
                    Ok(r) => r,
                    Err(e) => return cannot(e.to_string()),
                };
                let api = match api() {
                    Ok(api) => api,
                    Err(e) => return cannot(e.to_string()),
                };
                let mut keys = KeySet::default();
                // Keys of the whole range, plus the hour after it whose digest anchors the tail.
                for r in &regions {
                    if let Err(e) = api.list_public_keys(r, start_ms - 3_600_000, end_ms + 2 * 3_600_000, &mut keys) {
                        return cannot(format!("{e} (or pass --public-keys FILE)"));
                    }
                }
                opts.regions = regions;
                keys
            }
        };
        validate::validate(st.as_ref(), &keys, &opts)
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return cannot(e.to_string()),
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
        return cannot(format!("writing the report: {e}"));
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
        "{:.1} MB of JSON in {:.2}s: {:.0} events/s, {:.1} MB/s ({} thread{})",
        s.bytes_read as f64 / 1e6,
        secs,
        s.records_read as f64 / secs,
        s.bytes_read as f64 / 1e6 / secs,
        s.threads,
        if s.threads == 1 { "" } else { "s" }
    );
    println!("rows written: {}", s.rows_total());
    for (class, n) in &s.rows {
        println!("  {:<16} {:>10}  ({}, class_uid {})", class.dataset(), n, class.name(), class.uid());
    }
    println!("dead letters: {}", s.dead_total());
    for (reason, n) in &s.dead_letters {
        println!("  {:<24} {:>10}", reason.as_str(), n);
    }
    if s.inputs_resumed > 0 {
        println!("grown since archived, read from where they stopped: {}", s.inputs_resumed);
    }
    if s.inputs_unfinished > 0 {
        println!(
            "ending inside a record still being written, read up to it: {} (the rest is read by a later run)",
            s.inputs_unfinished
        );
    }
    if s.inputs_changed > 0 {
        println!(
            "changed since archived, read whole again: {} (the rows they held then are now twice in the archive)",
            s.inputs_changed
        );
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
    match &s.signing_key {
        Some(fp) => println!(
            "digests sealed: {} (key fingerprint {fp}; check: trailship validate-digests --archive {})",
            s.digests.len(),
            out.display()
        ),
        None => println!("digests sealed: none (unsigned: see `trailship keygen` and --signing-key)"),
    }
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

/// The public keys an archive publishes: `_digests/public-keys.json` (the
/// batch job's list) and a file per key under `_digests/public-keys/` (the
/// service's workers).
fn archive_keys(
    st: &dyn trailship::integrity::store::Store,
    bucket: &str,
    prefix: &str,
) -> Result<trailship::integrity::keys::KeySet, String> {
    use trailship::integrity::chain::{PUBLIC_KEYS, PUBLIC_KEYS_DIR};
    use trailship::integrity::keys::KeySet;
    use trailship::integrity::store::GetError;
    let mut keys = KeySet::default();
    let mut files = Vec::new();
    let list = format!("{prefix}{PUBLIC_KEYS}");
    match st.get(bucket, &list) {
        Ok(o) => files.push((list.clone(), o.bytes)),
        Err(GetError::NotFound) => {}
        Err(e) => return Err(format!("{}: {e}; pass --public-keys", st.display(bucket, &list))),
    }
    let dir = format!("{prefix}{PUBLIC_KEYS_DIR}");
    for key in st.list(bucket, &dir).map_err(|e| e.to_string())? {
        if !key.ends_with(".json") || key.ends_with(trailship::integrity::store::METADATA_SUFFIX) {
            continue;
        }
        let o = st.get(bucket, &key).map_err(|e| format!("{}: {e}", st.display(bucket, &key)))?;
        files.push((key, o.bytes));
    }
    if files.is_empty() {
        return Err(format!("{}: not found; pass --public-keys", st.display(bucket, &list)));
    }
    for (key, bytes) in files {
        let k = KeySet::from_list_public_keys_json(&String::from_utf8_lossy(&bytes))
            .map_err(|e| format!("{}: {e}", st.display(bucket, &key)))?;
        keys.extend(k);
    }
    Ok(keys)
}

/// Tells glibc's malloc to keep what it has rather than hand it back.
///
/// By default it serves blocks over a sliding threshold with fresh `mmap`s
/// and trims the heap's free top after every large free, so each batch's
/// column buffers, encoder pages and zstd contexts are page-faulted in and
/// zeroed by the kernel again: 53,000 faults and 0.26 s of system time on
/// the 293 MB benchmark, 3% of a core in all (benches/README.md, session
/// 13). Memory stays bounded by the buffer settings, not by this; peak RSS
/// did not move with 16 threads. Does nothing where the operator tunes
/// malloc (`MALLOC_*`, `GLIBC_TUNABLES`); says whether glibc took all three.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() -> bool {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_TOP_PAD: i32 = -2;
    const M_MMAP_THRESHOLD: i32 = -3;
    if operator_tunes_malloc() {
        return false;
    }
    // SAFETY: mallopt takes plain integers; called before any thread exists.
    // Blocks over 32 MiB (a record is at most 4) still get a mapping of
    // their own, which goes back to the kernel when freed.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
            && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
            && mallopt(M_TOP_PAD, 64 << 20) == 1
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn operator_tunes_malloc() -> bool {
    std::env::vars_os().any(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES"))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        /// Bytes in blocks that have a mapping of their own.
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }

    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }

    #[test]
    fn large_blocks_come_from_the_heap_once_tuned() {
        let tuned = super::tune_allocator();
        assert_eq!(tuned, !super::operator_tunes_malloc());
        if !tuned {
            return;
        }
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let mapped = || unsafe { mallinfo2() }.hblkhd;
        let before = mapped();
        // Over glibc's default threshold (128 KiB), under the tuned one.
        let block = std::hint::black_box(vec![1u8; 16 << 20]);
        assert_eq!(mapped(), before, "a 16 MiB block got a mapping of its own");
        drop(block);
        let huge = std::hint::black_box(vec![1u8; 40 << 20]);
        assert!(mapped() >= before + (40 << 20), "blocks over 32 MiB keep their own mapping");
        drop(huge);
    }
}
