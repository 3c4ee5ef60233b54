//! Per-stage throughput on a seeded CloudTrail corpus held in memory (no
//! gzip, no disk): decode (framing + simd-json), normalise (into column
//! batches), encode (zstd Parquet), and all three together.
//! Numbers and the command: `benches/README.md`.

#[path = "corpus.rs"]
mod corpus;
#[path = "stage.rs"]
mod stage;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trailship::batch::Batcher;
use trailship::encode::{EncodeOptions, writer_properties};
use trailship::normalize::{Normalizer, SourceKind};
use trailship::redact::{RedactionConfig, Redactor, Stats};

use stage::{decode, encode, normalise, normalise_redacted};

const RECORDS: u64 = 20_000;

fn corpus() -> Vec<u8> {
    let mut rng = corpus::Rng::new(42);
    let mut out = Vec::new();
    for f in 0..(RECORDS / 1000) {
        out.extend_from_slice(corpus::log_file(&mut rng, f * 1000, 1000).body.as_bytes());
        out.push(b'\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let input = corpus();
    let mut g = c.benchmark_group("cloudtrail");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);

    g.bench_function("decode", |b| {
        let mut parser = stage::Decoder::default();
        b.iter(|| assert_eq!(decode(&input, &mut parser), RECORDS))
    });

    g.bench_function("decode+normalise", |b| {
        let (mut parser, mut norm, mut batcher) =
            (stage::Decoder::default(), Normalizer::new(SourceKind::Auto), Batcher::default());
        b.iter(|| {
            assert_eq!(normalise(&input, &mut parser, &mut norm, &mut batcher), RECORDS);
            batcher.take_all()
        })
    });

    let redactor = std::sync::Arc::new(
        Redactor::new(&RedactionConfig {
            key: Some("bench-key-0123456789-0123456789-xx".into()),
            ..Default::default()
        })
        .unwrap(),
    );
    g.bench_function("decode+normalise+redact", |b| {
        let (mut parser, mut norm) = (stage::Decoder::default(), Normalizer::new(SourceKind::Auto));
        let mut batcher = Batcher::new(Some(redactor.clone()));
        b.iter(|| {
            assert_eq!(normalise_redacted(&input, &mut parser, &mut norm, &mut batcher, Some(&redactor)), RECORDS);
            batcher.take_all()
        })
    });

    // The per-record candidate check alone (what every record pays).
    g.bench_function("redact_candidate_check", |b| {
        let mut rng = corpus::Rng::new(42);
        let records: Vec<String> = (0..RECORDS)
            .map(|i| {
                let mut s = String::new();
                corpus::record(&mut rng, i, &mut s);
                s
            })
            .collect();
        b.iter(|| {
            let n = records.iter().filter(|r| redactor.candidate(r.as_bytes())).count();
            assert_eq!(n, 0, "the corpus holds no token");
            n
        })
    });

    // The full token scanner over the corpus text: no secret in it that a
    // token detector should find (the session tokens are for field rules).
    g.bench_function("redact_scan_text", |b| {
        let mut out = Vec::with_capacity(input.len());
        b.iter(|| {
            out.clear();
            let mut st = Stats::default();
            redactor.scan_into(&input, &mut out, &mut st);
            assert_eq!(st.count, 0);
            out.len()
        })
    });

    let props = writer_properties(&EncodeOptions::default()).unwrap();
    let batches = {
        let (mut parser, mut norm, mut batcher) =
            (stage::Decoder::default(), Normalizer::new(SourceKind::Auto), Batcher::default());
        normalise(&input, &mut parser, &mut norm, &mut batcher);
        batcher.take_all()
    };
    g.bench_function("encode", |b| b.iter(|| encode(&batches, &props)));

    g.bench_function("end_to_end_in_memory", |b| {
        let (mut parser, mut norm, mut batcher) =
            (stage::Decoder::default(), Normalizer::new(SourceKind::Auto), Batcher::default());
        b.iter(|| {
            normalise(&input, &mut parser, &mut norm, &mut batcher);
            encode(&batcher.take_all(), &props)
        })
    });
    g.finish();
    eprintln!("corpus: {RECORDS} records, {} bytes ({} bytes/record)", input.len(), input.len() as u64 / RECORDS);

    // The other families, decode + normalise + redact, one group each.
    for (family, generate) in [
        ("k8s_audit", corpus::k8s_event as fn(&mut corpus::Rng, u64, &mut String)),
        ("github_webhooks", corpus::github_delivery),
    ] {
        let text = corpus::ndjson(&mut corpus::Rng::new(7), RECORDS, generate).into_bytes();
        let mut g = c.benchmark_group(family);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.sample_size(10);
        g.bench_function("decode+normalise+redact", |b| {
            let (mut parser, mut norm) = (stage::Decoder::default(), Normalizer::new(SourceKind::Auto));
            let mut batcher = Batcher::new(Some(redactor.clone()));
            b.iter(|| {
                assert_eq!(normalise_redacted(&text, &mut parser, &mut norm, &mut batcher, Some(&redactor)), RECORDS);
                batcher.take_all()
            })
        });
        g.finish();
        eprintln!("{family}: {RECORDS} records, {} bytes ({} bytes/record)", text.len(), text.len() as u64 / RECORDS);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
